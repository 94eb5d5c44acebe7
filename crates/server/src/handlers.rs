//! The job handlers of the GitHub work: [`review`] (a pull request to review) and [`mention`]
//! (a mention to answer). Each starts from what webhook ingress decided from the payload and
//! records that decision as its result; the slow checks (the sender's permission, the
//! repository's `.kodiai.yml`) and the work itself join them here.

pub mod mention;
pub mod review;
