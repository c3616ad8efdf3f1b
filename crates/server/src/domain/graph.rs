//! Dependency-graph algorithms: cycle detection before an edge is added, and the plan (a
//! topological order with ties broken by priority).
//!
//! Both are iterative, so a chain of a hundred thousand tasks does not overflow the stack.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// The shortest path `from` → … → `to` following edges (`task → what it depends on`), if any.
///
/// Adding the edge `task → dep` closes a cycle exactly when a path `dep → … → task` exists; the
/// path plus the new edge is the cycle reported to the client.
pub fn find_path<T: Copy + Eq + Hash>(edges: &[(T, T)], from: T, to: T) -> Option<Vec<T>> {
    let mut out: HashMap<T, Vec<T>> = HashMap::new();
    for &(a, b) in edges {
        out.entry(a).or_default().push(b);
    }
    let mut came_from: HashMap<T, T> = HashMap::new();
    let mut seen: HashSet<T> = HashSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to];
            let mut cur = to;
            while let Some(&prev) = came_from.get(&cur) {
                path.push(prev);
                cur = prev;
            }
            path.reverse();
            return Some(path);
        }
        for &next in out.get(&node).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// What the planner needs to know of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanItem<T> {
    /// The task's id; ids sort by creation time, which breaks ties between equal priorities.
    pub id: T,
    /// Higher first among the tasks that are ready at the same point.
    pub priority: u8,
}

/// Every task in an order where each comes after all its dependencies; among the tasks whose
/// dependencies are all placed, the highest priority goes first, then the oldest.
///
/// Edges to tasks not in `items` are ignored. The store refuses cycles, but should one exist the
/// tasks on it are appended at the end in priority order rather than dropped.
pub fn plan_order<T: Copy + Ord + Hash>(items: &[PlanItem<T>], edges: &[(T, T)]) -> Vec<T> {
    let priority: HashMap<T, u8> = items.iter().map(|i| (i.id, i.priority)).collect();
    let mut waiting_on: HashMap<T, usize> = items.iter().map(|i| (i.id, 0)).collect();
    let mut dependents: HashMap<T, Vec<T>> = HashMap::new();
    for &(task, dep) in edges {
        if priority.contains_key(&task) && priority.contains_key(&dep) {
            *waiting_on.get_mut(&task).expect("task is known") += 1;
            dependents.entry(dep).or_default().push(task);
        }
    }
    let key = |id: T| (priority[&id], Reverse(id));
    let mut ready: BinaryHeap<(u8, Reverse<T>)> = waiting_on
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(&id, _)| key(id))
        .collect();
    let mut order = Vec::with_capacity(items.len());
    while let Some((_, Reverse(id))) = ready.pop() {
        order.push(id);
        for &next in dependents.get(&id).map(Vec::as_slice).unwrap_or_default() {
            let n = waiting_on.get_mut(&next).expect("dependent is known");
            *n -= 1;
            if *n == 0 {
                ready.push(key(next));
            }
        }
    }
    if order.len() < items.len() {
        let placed: HashSet<T> = order.iter().copied().collect();
        let mut rest: Vec<T> = items
            .iter()
            .map(|i| i.id)
            .filter(|id| !placed.contains(id))
            .collect();
        rest.sort_by_key(|&id| Reverse(key(id)));
        order.extend(rest);
    }
    order
}

/// The tasks that lie on a cycle, or wait on one: what Kahn's algorithm cannot place. Empty for
/// a DAG. Used to check a whole import at once, where per-edge path searches would be quadratic.
pub fn tasks_on_cycles<T: Copy + Eq + Hash>(edges: &[(T, T)]) -> Vec<T> {
    let mut waiting_on: HashMap<T, usize> = HashMap::new();
    let mut dependents: HashMap<T, Vec<T>> = HashMap::new();
    for &(task, dep) in edges {
        *waiting_on.entry(task).or_default() += 1;
        waiting_on.entry(dep).or_default();
        dependents.entry(dep).or_default().push(task);
    }
    let mut ready: Vec<T> = waiting_on
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(&t, _)| t)
        .collect();
    while let Some(id) = ready.pop() {
        waiting_on.remove(&id);
        for &next in dependents.get(&id).map(Vec::as_slice).unwrap_or_default() {
            if let Some(n) = waiting_on.get_mut(&next) {
                *n -= 1;
                if *n == 0 {
                    ready.push(next);
                }
            }
        }
    }
    waiting_on.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_no_path_in_a_dag() {
        let edges = [(1, 2), (2, 3), (1, 3)];
        assert_eq!(find_path(&edges, 3, 1), None);
    }

    #[test]
    fn reports_the_cycle_an_edge_would_close() {
        // 1 depends on 2, 2 on 3: adding 3 -> 1 closes 3 -> 1 -> 2 -> 3.
        let edges = [(1, 2), (2, 3)];
        assert_eq!(find_path(&edges, 1, 3), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_self_path_is_trivial() {
        assert_eq!(find_path::<u32>(&[], 7, 7), Some(vec![7]));
    }

    #[test]
    fn handles_long_chains_without_recursion() {
        let n = 200_000u32;
        let edges: Vec<(u32, u32)> = (0..n).map(|i| (i, i + 1)).collect();
        let path = find_path(&edges, 0, n).expect("chain is connected");
        assert_eq!(path.len() as u32, n + 1);
        assert_eq!(find_path(&edges, n, 0), None);
        let items: Vec<PlanItem<u32>> = (0..=n).map(|id| PlanItem { id, priority: 0 }).collect();
        let order = plan_order(&items, &edges);
        assert_eq!(
            order.first(),
            Some(&n),
            "the end of the chain has no dependency"
        );
        assert_eq!(order.last(), Some(&0));
    }

    #[test]
    fn tasks_on_cycles_finds_only_cycles_and_what_waits_on_them() {
        assert!(tasks_on_cycles(&[(1, 2), (2, 3), (1, 3)]).is_empty());
        let mut stuck = tasks_on_cycles(&[(1, 2), (2, 1), (3, 1), (4, 5)]);
        stuck.sort();
        assert_eq!(stuck, vec![1, 2, 3]);
    }

    #[test]
    fn plan_respects_dependencies_then_priority_then_age() {
        // 10 (prio 90) depends on 30 (prio 10); 20 has prio 50; 40 prio 50 but newer than 20.
        let items = [
            PlanItem {
                id: 10,
                priority: 90,
            },
            PlanItem {
                id: 20,
                priority: 50,
            },
            PlanItem {
                id: 30,
                priority: 10,
            },
            PlanItem {
                id: 40,
                priority: 50,
            },
        ];
        let edges = [(10, 30)];
        assert_eq!(plan_order(&items, &edges), vec![20, 40, 30, 10]);
    }

    #[test]
    fn plan_places_a_high_priority_task_right_after_its_dependency() {
        let items = [
            PlanItem {
                id: 1,
                priority: 100,
            },
            PlanItem { id: 2, priority: 0 },
            PlanItem {
                id: 3,
                priority: 50,
            },
        ];
        let edges = [(1, 2)];
        assert_eq!(plan_order(&items, &edges), vec![3, 2, 1]);
    }
}
