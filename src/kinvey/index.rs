//! An in-memory index of flows by `X-Kinvey-Request-ID`, with exact and prefix lookup.

use std::collections::BTreeMap;

use crate::flow::FlowId;

/// Flows by request id (ids compared case-insensitively).
#[derive(Debug, Default, Clone)]
pub struct RequestIdIndex {
    by_id: BTreeMap<String, Vec<FlowId>>,
}

impl RequestIdIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `flow` carries `request_id`.
    pub fn insert(&mut self, request_id: &str, flow: FlowId) {
        self.by_id
            .entry(request_id.trim().to_ascii_lowercase())
            .or_default()
            .push(flow);
    }

    /// The flows carrying exactly `request_id`.
    pub fn exact(&self, request_id: &str) -> &[FlowId] {
        self.by_id
            .get(&request_id.trim().to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Every (request id, flow) whose id starts with `prefix`, in id order.
    pub fn prefix(&self, prefix: &str) -> Vec<(&str, FlowId)> {
        let prefix = prefix.trim().to_ascii_lowercase();
        self.by_id
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .flat_map(|(id, flows)| flows.iter().map(move |f| (id.as_str(), *f)))
            .collect()
    }

    /// The number of distinct request ids.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_lookups() {
        let mut index = RequestIdIndex::new();
        index.insert("ab12cd", 1);
        index.insert("AB12EF", 2);
        index.insert("ff00", 3);
        index.insert("ab12cd", 4);
        assert_eq!(index.exact("ab12cd"), [1, 4]);
        assert_eq!(index.exact("AB12CD "), [1, 4]);
        assert!(index.exact("ab12").is_empty());
        assert_eq!(
            index.prefix("ab12"),
            [("ab12cd", 1), ("ab12cd", 4), ("ab12ef", 2)]
        );
        assert_eq!(index.prefix("f"), [("ff00", 3)]);
        assert!(index.prefix("zz").is_empty());
        assert_eq!(index.len(), 3);
    }
}
