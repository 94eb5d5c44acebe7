//! `[database]`: the SQLite file or PostgreSQL server, and the pool.

use std::path::Path;

use kodiai_store::DatabaseLocation;
use serde::{Serialize, Serializer};

use super::ConfigError;
use super::sources::{Kind, Sources};

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    /// SQLite file or PostgreSQL URL; shown with its password masked.
    #[serde(serialize_with = "redacted_location")]
    pub url: DatabaseLocation,
    pub max_connections: u32,
}

pub(super) fn read(s: &mut Sources<'_>, data_dir: &Path) -> Result<DatabaseConfig, ConfigError> {
    let config = DatabaseConfig {
        url: match s.get("database.url", &["DATABASE_URL"], Kind::Url)? {
            Some(v) => {
                let parsed = DatabaseLocation::parse(&v.text);
                match parsed {
                    Ok(location) => location,
                    Err(expected) => return Err(v.invalid(&expected)),
                }
            }
            None => DatabaseLocation::Sqlite(data_dir.join("kodiai.db")),
        },
        max_connections: s
            .parse(
                "database.max_connections",
                &["KODIAI_DB_MAX_CONNECTIONS"],
                "a whole number from 1 to 1000",
                |t| t.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)),
            )?
            .unwrap_or(10),
    };
    Ok(config)
}

fn redacted_location<S: Serializer>(
    location: &DatabaseLocation,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&location.redacted())
}
