//! What tokens cost: a table of USD per million tokens by model, built in for the common models
//! and overridden from configuration (`[llm.prices]`). A model the table does not know costs 0
//! (local models, new names), which the accounting shows as such.

use std::collections::BTreeMap;

use crate::types::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Reading the prompt cache.
    pub cache_read: f64,
    /// Writing the prompt cache (Anthropic).
    pub cache_write: f64,
}

impl Price {
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per(usage.input_tokens, self.input)
            + per(usage.output_tokens, self.output)
            + per(usage.cache_read_tokens, self.cache_read)
            + per(usage.cache_write_tokens, self.cache_write)
    }
}

/// Prices by `provider/model` or by bare model name. A dated model name
/// (`claude-sonnet-4-5-20250929`) takes the price of its longest listed prefix.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

/// List prices when this version was written (USD per million tokens: input, output, cache
/// read, cache write).
const BUILTIN: &[(&str, [f64; 4])] = &[
    ("claude-opus-4-5", [5.0, 25.0, 0.5, 6.25]),
    ("claude-opus-4-1", [15.0, 75.0, 1.5, 18.75]),
    ("claude-opus-4", [15.0, 75.0, 1.5, 18.75]),
    ("claude-sonnet-4-5", [3.0, 15.0, 0.3, 3.75]),
    ("claude-sonnet-4", [3.0, 15.0, 0.3, 3.75]),
    ("claude-haiku-4-5", [1.0, 5.0, 0.1, 1.25]),
    ("claude-3-5-haiku", [0.8, 4.0, 0.08, 1.0]),
    ("gpt-5", [1.25, 10.0, 0.125, 0.0]),
    ("gpt-5-mini", [0.25, 2.0, 0.025, 0.0]),
    ("gpt-4.1", [2.0, 8.0, 0.5, 0.0]),
    ("gpt-4.1-mini", [0.4, 1.6, 0.1, 0.0]),
    ("gpt-4o", [2.5, 10.0, 1.25, 0.0]),
    ("gpt-4o-mini", [0.15, 0.6, 0.075, 0.0]),
    ("gemini-2.5-pro", [1.25, 10.0, 0.31, 0.0]),
    ("gemini-2.5-flash", [0.3, 2.5, 0.075, 0.0]),
];

impl PriceTable {
    /// The built-in list prices.
    pub fn builtin() -> Self {
        let mut table = Self::default();
        for (model, [input, output, cache_read, cache_write]) in BUILTIN {
            table.set(
                *model,
                Price {
                    input: *input,
                    output: *output,
                    cache_read: *cache_read,
                    cache_write: *cache_write,
                },
            );
        }
        table
    }

    /// Sets (or overrides) the price of `model` (`provider/model` or a bare model name).
    pub fn set(&mut self, model: impl Into<String>, price: Price) {
        self.prices.insert(model.into(), price);
    }

    /// The price of `model` of `provider`: an exact `provider/model`, an exact model, then the
    /// longest listed prefix of either.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        let full = format!("{provider}/{model}");
        if let Some(price) = self.prices.get(&full).or_else(|| self.prices.get(model)) {
            return Some(*price);
        }
        self.prices
            .iter()
            .filter(|(key, _)| {
                full.starts_with(key.as_str())
                    || (!key.contains('/') && model.starts_with(key.as_str()))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(_, price)| *price)
    }

    /// The cost of one call in USD (0 for a model without a price).
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> f64 {
        self.price(provider, model)
            .map_or(0.0, |price| price.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_names_take_the_price_of_their_longest_prefix() {
        let table = PriceTable::builtin();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
        };
        let sonnet = table.cost("anthropic", "claude-sonnet-4-5-20250929", &usage);
        assert!(
            (sonnet - (3.0 + 15.0 + 0.3 + 3.75)).abs() < 1e-9,
            "{sonnet}"
        );
        let mini = table.price("openai", "gpt-4.1-mini-2025-04-14").unwrap();
        assert_eq!(mini.input, 0.4);
        assert_eq!(table.cost("ollama", "qwen2.5-coder", &usage), 0.0);
    }

    #[test]
    fn configured_prices_override_by_provider_and_model() {
        let mut table = PriceTable::builtin();
        let price = Price {
            input: 1.0,
            output: 2.0,
            cache_read: 0.0,
            cache_write: 0.0,
        };
        table.set("openrouter/claude-sonnet-4-5", price);
        assert_eq!(table.price("openrouter", "claude-sonnet-4-5"), Some(price));
        assert_eq!(
            table
                .price("anthropic", "claude-sonnet-4-5")
                .map(|p| p.input),
            Some(3.0)
        );
    }
}
