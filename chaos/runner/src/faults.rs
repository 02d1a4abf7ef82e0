//! Which member is under a fault, and when: a pure walk over timeline steps.
//!
//! A member is faulted while its proxy is disabled, its server is killed, or a toxic sits on its
//! proxy. Steps overlap (two toxics, a kill during a disable), so a member's fault window opens
//! when the first fault arrives and closes when the last one is lifted. Validation runs this over
//! the planned times (is there a moment with every primary down?), and the verdicts over the
//! times the steps actually ran.

use std::collections::BTreeSet;
use std::time::Duration;

use super::scenario::Action;

/// A span of time a member spent faulted; `end` is the restore, `None` when never restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub member: usize,
    pub start: Duration,
    pub end: Option<Duration>,
}

impl Window {
    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: Duration) -> bool {
        t >= self.start && self.end.is_none_or(|end| t < end)
    }
}

#[derive(Clone, Debug, Default)]
struct MemberFaults {
    disabled: bool,
    killed: bool,
    toxics: BTreeSet<String>,
}

impl MemberFaults {
    fn any(&self) -> bool {
        self.disabled || self.killed || !self.toxics.is_empty()
    }

    fn toxic(&self) -> bool {
        !self.toxics.is_empty()
    }
}

/// Fault windows (any fault), in order of opening.
pub fn windows<'a>(
    members: usize,
    steps: impl IntoIterator<Item = (Duration, &'a Action)>,
) -> Vec<Window> {
    sweep(members, steps, MemberFaults::any)
}

/// Windows during which a member carries at least one toxic.
pub fn toxic_windows<'a>(
    members: usize,
    steps: impl IntoIterator<Item = (Duration, &'a Action)>,
) -> Vec<Window> {
    sweep(members, steps, MemberFaults::toxic)
}

fn sweep<'a>(
    members: usize,
    steps: impl IntoIterator<Item = (Duration, &'a Action)>,
    faulted: fn(&MemberFaults) -> bool,
) -> Vec<Window> {
    let mut state = vec![MemberFaults::default(); members];
    let mut open: Vec<Option<usize>> = vec![None; members];
    let mut out: Vec<Window> = Vec::new();
    for (at, action) in steps {
        let before: Vec<bool> = state.iter().map(faulted).collect();
        apply(&mut state, action);
        for (m, s) in state.iter().enumerate() {
            match (before[m], faulted(s)) {
                (false, true) => {
                    open[m] = Some(out.len());
                    out.push(Window {
                        member: m,
                        start: at,
                        end: None,
                    });
                }
                (true, false) => {
                    if let Some(i) = open[m].take() {
                        out[i].end = Some(at);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn apply(state: &mut [MemberFaults], action: &Action) {
    match action {
        Action::Reset => {
            // /reset re-enables proxies and drops toxics; a killed server stays killed.
            for s in state.iter_mut() {
                s.disabled = false;
                s.toxics.clear();
            }
        }
        Action::AddToxic { member, toxic } => {
            if let Some(s) = state.get_mut(*member) {
                s.toxics.insert(toxic.name.clone());
            }
        }
        Action::RemoveToxic { member, name } => {
            if let Some(s) = state.get_mut(*member) {
                s.toxics.remove(name);
            }
        }
        Action::Disable { member } | Action::Enable { member } => {
            if let Some(s) = state.get_mut(*member) {
                s.disabled = matches!(action, Action::Disable { .. });
            }
        }
        Action::Kill { member } | Action::Restart { member } => {
            if let Some(s) = state.get_mut(*member) {
                s.killed = matches!(action, Action::Kill { .. });
            }
        }
        // Operator actions, not faults: a drained member is not a failed one.
        Action::Drain { .. } | Action::Undrain { .. } | Action::Reload => {}
    }
}

/// The spans during which every member in `group` is faulted at once (start, end).
pub fn all_faulted(windows: &[Window], group: &[usize]) -> Vec<(Duration, Option<Duration>)> {
    if group.is_empty() {
        return Vec::new();
    }
    // Every instant where some window opens or closes; the state only changes there.
    let mut edges: BTreeSet<Duration> = BTreeSet::new();
    for w in windows.iter().filter(|w| group.contains(&w.member)) {
        edges.insert(w.start);
        if let Some(end) = w.end {
            edges.insert(end);
        }
    }
    let down_at = |t: Duration| {
        group
            .iter()
            .all(|m| windows.iter().any(|w| w.member == *m && w.contains(t)))
    };
    let mut spans = Vec::new();
    let mut start: Option<Duration> = None;
    for t in edges {
        match (start, down_at(t)) {
            (None, true) => start = Some(t),
            (Some(s), false) => {
                spans.push((s, Some(t)));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, None));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn overlapping_faults_make_one_window() {
        let steps = [
            (s(100), Action::Disable { member: 1 }),
            (s(200), Action::Kill { member: 1 }),
            (s(300), Action::Enable { member: 1 }),
            (s(400), Action::Restart { member: 1 }),
            (s(500), Action::Kill { member: 0 }),
        ];
        let w = windows(2, steps.iter().map(|(t, a)| (*t, a)));
        assert_eq!(
            w,
            [
                Window {
                    member: 1,
                    start: s(100),
                    end: Some(s(400))
                },
                Window {
                    member: 0,
                    start: s(500),
                    end: None
                },
            ]
        );
    }

    #[test]
    fn all_primaries_down_only_while_both_are() {
        let steps = [
            (s(100), Action::Disable { member: 0 }),
            (s(200), Action::Disable { member: 1 }),
            (s(600), Action::Enable { member: 0 }),
            (s(700), Action::Reset),
        ];
        let w = windows(3, steps.iter().map(|(t, a)| (*t, a)));
        assert_eq!(all_faulted(&w, &[0, 1]), [(s(200), Some(s(600)))]);
        assert!(all_faulted(&w, &[0, 2]).is_empty());
    }
}
