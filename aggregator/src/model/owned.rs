//! A model as the operator declares it (`[[model]]`): who owns it, which series are its, the
//! SLOs that belong to it, and what its hardware costs.

use std::collections::BTreeMap;

/// One validated `[[model]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDefinition {
    /// Name: the `model` tag's value by default.
    pub name: String,
    /// Owning team.
    pub owner: String,
    /// How to reach the owner (a channel, an address); empty when not given.
    pub contact: String,
    /// Tags that select the model's series (default `model:<name>`).
    pub tags: Vec<(String, String)>,
    /// Names of the `[[slo]]`s that belong to it.
    pub slos: Vec<String>,
    /// Prices.
    pub prices: Prices,
    /// Metrics that count its tokens and requests, where not the known names.
    pub metrics: CostMetrics,
}

/// What an hour of hardware costs, in the operator's currency.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prices {
    /// Per GPU-hour by GPU class: the `gpu_class` tag of a GPU series, else its `gpu_model`.
    pub gpu_hour: BTreeMap<String, f64>,
    /// Per GPU-hour for classes not listed.
    pub gpu_hour_default: Option<f64>,
    /// Per host-hour.
    pub host_hour: Option<f64>,
}

impl Prices {
    /// The price of an hour of a GPU with these class names (tried in order), if any.
    pub fn gpu(&self, classes: &[Option<&str>]) -> Option<f64> {
        classes
            .iter()
            .flatten()
            .find_map(|c| self.gpu_hour.get(*c).copied())
            .or(self.gpu_hour_default)
    }
}

/// Configured metric names for tokens and requests (`None`: the known names).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostMetrics {
    /// Input (prompt) tokens: a counter, or a histogram whose sum counts them.
    pub tokens_in: Option<String>,
    /// Output (generated) tokens.
    pub tokens_out: Option<String>,
    /// Requests: a counter, or a histogram whose count counts them.
    pub requests: Option<String>,
}
