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
    /// Per GPU-hour by GPU class (`[model.price.gpu_class]`).
    pub gpu_hour: BTreeMap<String, f64>,
    /// Per GPU-hour for classes not listed (`price.gpu_hour`).
    pub gpu_hour_default: Option<f64>,
    /// Per host-hour.
    pub host_hour: Option<f64>,
}

impl Prices {
    /// The class key that prices a GPU: its `gpu_class` tag when listed, else the longest key
    /// found in its `gpu_model` (case-insensitive), else none.
    pub fn class_of(&self, class: Option<&str>, model: Option<&str>) -> Option<&str> {
        if let Some(c) = class
            && let Some((k, _)) = self.gpu_hour.get_key_value(c)
        {
            return Some(k);
        }
        let model = model?.to_lowercase();
        self.gpu_hour
            .keys()
            .filter(|k| model.contains(&k.to_lowercase()))
            .max_by_key(|k| k.len())
            .map(String::as_str)
    }

    /// The price of an hour of a GPU with this `gpu_class` tag and `gpu_model`, if any.
    pub fn gpu(&self, class: Option<&str>, model: Option<&str>) -> Option<f64> {
        self.class_of(class, model)
            .and_then(|k| self.gpu_hour.get(k).copied())
            .or(self.gpu_hour_default)
    }
}

/// Configured metric names for latency, tokens and requests (`None`: the known names).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostMetrics {
    /// Its latency histogram.
    pub latency: Option<String>,
    /// All its tokens (split by a `gen_ai.token.type` tag where present).
    pub tokens: Option<String>,
    /// Input (prompt) tokens: a counter, or a histogram whose sum counts them.
    pub tokens_in: Option<String>,
    /// Output (generated) tokens.
    pub tokens_out: Option<String>,
    /// Requests: a counter, or a histogram whose count counts them.
    pub requests: Option<String>,
}
