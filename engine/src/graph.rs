//! The step graph: a DAG of steps keyed by step ID.
//!
//! The graph knows steps only as IDs, dependencies and an opaque payload: the
//! planner and executor walk it without knowing what a step does. Its order
//! is deterministic (Kahn's algorithm, ties broken by insertion order), so
//! plans list steps in the same order on every machine.

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("step `{0}` is defined twice")]
    Duplicate(String),
    #[error("step `{step}` depends on `{missing}`, which is not a step of this mesh")]
    UnknownDependency { step: String, missing: String },
    #[error(
        "the steps {} depend on each other in a cycle, so no order can run them; \
         this is a bug in mesh's topology compiler: please report it with your mesh file",
        .0.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    )]
    Cycle(Vec<String>),
}

/// Anything the graph can hold: it needs only an ID.
pub trait Node {
    fn id(&self) -> &str;
}

/// A DAG of nodes, built with [`GraphBuilder`].
#[derive(Debug, Clone)]
pub struct Dag<N> {
    graph: DiGraph<N, ()>,
    index: HashMap<String, NodeIndex>,
    /// Topological order (dependencies first), deterministic.
    order: Vec<NodeIndex>,
}

/// Collects nodes and edges, then checks them into a [`Dag`].
#[derive(Debug)]
pub struct GraphBuilder<N> {
    graph: DiGraph<N, ()>,
    index: HashMap<String, NodeIndex>,
    pending: Vec<(String, String)>,
}

impl<N: Node> Default for GraphBuilder<N> {
    fn default() -> Self {
        GraphBuilder {
            graph: DiGraph::new(),
            index: HashMap::new(),
            pending: Vec::new(),
        }
    }
}

impl<N: Node> GraphBuilder<N> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, node: N) -> Result<(), GraphError> {
        let id = node.id().to_string();
        if self.index.contains_key(&id) {
            return Err(GraphError::Duplicate(id));
        }
        let ix = self.graph.add_node(node);
        self.index.insert(id, ix);
        Ok(())
    }

    /// Records that `step` runs after `dependency`. Checked in [`Self::build`],
    /// so nodes may be added in any order.
    pub fn depend(&mut self, step: impl Into<String>, dependency: impl Into<String>) {
        self.pending.push((step.into(), dependency.into()));
    }

    pub fn build(mut self) -> Result<Dag<N>, GraphError> {
        for (step, dep) in std::mem::take(&mut self.pending) {
            let (Some(&s), Some(&d)) = (self.index.get(&step), self.index.get(&dep)) else {
                let missing = if self.index.contains_key(&step) {
                    dep
                } else {
                    step.clone()
                };
                return Err(GraphError::UnknownDependency { step, missing });
            };
            // Edges point from a dependency to what depends on it: the
            // direction work flows.
            self.graph.update_edge(d, s, ());
        }
        let order = topological_order(&self.graph)?;
        Ok(Dag {
            graph: self.graph,
            index: self.index,
            order,
        })
    }
}

/// Kahn's algorithm with a min-heap on insertion index: among the steps that
/// are ready, the one added first comes first.
fn topological_order<N: Node>(graph: &DiGraph<N, ()>) -> Result<Vec<NodeIndex>, GraphError> {
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.edges_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<NodeIndex>> = graph
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(Reverse(n)) = ready.pop() {
        order.push(n);
        for e in graph.edges_directed(n, Direction::Outgoing) {
            let t = e.target();
            indegree[t.index()] -= 1;
            if indegree[t.index()] == 0 {
                ready.push(Reverse(t));
            }
        }
    }
    if order.len() == graph.node_count() {
        return Ok(order);
    }
    // Name the steps of one cycle (the first strongly connected component
    // with more than one node, or a self-loop).
    let cycle = tarjan_scc(graph)
        .into_iter()
        .find(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
        .unwrap_or_default();
    let mut names: Vec<String> = cycle.iter().map(|&n| graph[n].id().to_string()).collect();
    names.sort();
    Err(GraphError::Cycle(names))
}

impl<N: Node> Dag<N> {
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn get(&self, id: &str) -> Option<&N> {
        self.index.get(id).map(|&ix| &self.graph[ix])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The node `id`, to change what it carries (not its ID: the graph is
    /// indexed by it, and its edges stay as built).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut N> {
        self.index.get(id).map(|&ix| &mut self.graph[ix])
    }

    /// Nodes in dependency order.
    pub fn in_order(&self) -> impl Iterator<Item = &N> + '_ {
        self.order.iter().map(|&ix| &self.graph[ix])
    }

    /// The IDs `id` depends on directly, in insertion order.
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The IDs that depend directly on `id`, in insertion order.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Outgoing)
    }

    fn neighbours(&self, id: &str, dir: Direction) -> Vec<&str> {
        let Some(&ix) = self.index.get(id) else {
            return Vec::new();
        };
        let mut ns: Vec<NodeIndex> = self.graph.neighbors_directed(ix, dir).collect();
        ns.sort();
        ns.into_iter().map(|n| self.graph[n].id()).collect()
    }

    /// The graph in Graphviz DOT: an edge `a -> b` means a runs before b.
    pub fn to_dot(&self) -> String {
        self.to_dot_grouped(|_| None)
    }

    /// DOT with the nodes boxed in groups: `group(node)` gives a group's
    /// key and label (e.g. a cluster: `east (primary, network net-east)`);
    /// groups appear in order of their first node, then ungrouped nodes.
    pub fn to_dot_grouped(&self, group: impl Fn(&N) -> Option<(String, String)>) -> String {
        let mut out = String::from("digraph mesh {\n  rankdir=LR;\n  node [shape=box];\n");
        let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
        let mut loose = Vec::new();
        for &ix in &self.order {
            let node = &self.graph[ix];
            match group(node) {
                Some((key, label)) => match groups.iter_mut().find(|g| g.0 == key) {
                    Some(g) => g.2.push(node.id()),
                    None => groups.push((key, label, vec![node.id()])),
                },
                None => loose.push(node.id()),
            }
        }
        for (key, label, ids) in &groups {
            let _ = writeln!(out, "  subgraph {} {{", dot_id(&format!("cluster_{key}")));
            let _ = writeln!(out, "    label={};", dot_id(label));
            for id in ids {
                let _ = writeln!(out, "    {};", dot_id(id));
            }
            out.push_str("  }\n");
        }
        for id in loose {
            let _ = writeln!(out, "  {};", dot_id(id));
        }
        for &ix in &self.order {
            for dep in self.dependents(self.graph[ix].id()) {
                let _ = writeln!(out, "  {} -> {};", dot_id(self.graph[ix].id()), dot_id(dep));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn dot_id(id: &str) -> String {
    format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct S(&'static str);
    impl Node for S {
        fn id(&self) -> &str {
            self.0
        }
    }

    fn dag(nodes: &[&'static str], edges: &[(&str, &str)]) -> Result<Dag<S>, GraphError> {
        let mut b = GraphBuilder::new();
        for n in nodes {
            b.add(S(n))?;
        }
        for (s, d) in edges {
            b.depend(*s, *d);
        }
        b.build()
    }

    fn order(d: &Dag<S>) -> Vec<&str> {
        d.in_order().map(|n| n.0).collect()
    }

    #[test]
    fn order_is_topological_and_prefers_insertion_order() {
        let d = dag(&["c", "a", "b"], &[("c", "b"), ("a", "b")]).unwrap();
        assert_eq!(order(&d), ["b", "c", "a"]);
        let d = dag(&["x", "y", "z"], &[]).unwrap();
        assert_eq!(order(&d), ["x", "y", "z"]);
    }

    #[test]
    fn neighbours_both_ways() {
        let d = dag(&["a", "b", "c"], &[("c", "a"), ("c", "b"), ("b", "a")]).unwrap();
        assert_eq!(d.dependencies("c"), ["a", "b"]);
        assert_eq!(d.dependents("a"), ["b", "c"]);
        assert!(d.dependencies("nope").is_empty());
    }

    #[test]
    fn cycle_is_an_error_naming_its_steps() {
        let err = dag(
            &["a", "b", "c", "d"],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")],
        )
        .unwrap_err();
        assert_eq!(
            err,
            GraphError::Cycle(vec!["a".into(), "b".into(), "c".into()])
        );
        assert!(err.to_string().contains("`a`, `b`, `c`"));
        let err = dag(&["a"], &[("a", "a")]).unwrap_err();
        assert_eq!(err, GraphError::Cycle(vec!["a".into()]));
    }

    #[test]
    fn duplicates_and_unknown_dependencies_are_errors() {
        assert_eq!(
            dag(&["a", "a"], &[]).unwrap_err(),
            GraphError::Duplicate("a".into())
        );
        assert_eq!(
            dag(&["a"], &[("a", "zz")]).unwrap_err(),
            GraphError::UnknownDependency {
                step: "a".into(),
                missing: "zz".into()
            }
        );
    }

    #[test]
    fn dot_lists_nodes_and_edges() {
        let d = dag(&["p/a", "p/b"], &[("p/b", "p/a")]).unwrap();
        let dot = d.to_dot();
        assert!(dot.starts_with("digraph mesh {"));
        assert!(dot.contains("\"p/a\" -> \"p/b\";"));
        assert!(dot.trim_end().ends_with('}'));
    }
}
