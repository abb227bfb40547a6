//! The wildcard listener rule: what is wrong with a listener's rules, and the safe repair.
//!
//! Every preview is reached through one rule, host `*.<suffix>` → forward to the proxy's target
//! group. A load balancer evaluates rules by priority, lowest number first, and the first whose
//! conditions all match wins: it knows nothing of specificity, so a rule evaluated earlier that
//! can match a preview host (a per-session rule the original left behind, a catch-all) takes
//! those requests away from the proxy.
//!
//! **Priority of a new rule: the lowest free number before every rule that can match a preview
//! host.** The wildcard matches only hosts under the suffix, which belong to this system, so
//! evaluating it early takes nothing from other applications sharing the listener, while
//! evaluating it late lets anything before it shadow it. When no such number is free (a rule at
//! priority 1 catches preview hosts), the rule goes to the lowest free number and the shadowing
//! stays reported, for an operator to remove (`cca sweep` removes per-session leftovers).
//!
//! **Only a rule of our own is changed.** A wildcard rule holding nothing but the wildcard host
//! is repointed or moved in place; one that also routes other hosts or has more conditions may
//! serve something else, so a dedicated rule is created before it instead.

use std::collections::BTreeSet;

use super::finding::Repair;
use super::hosts::{is_wildcard, may_match_preview_host, wildcard};

/// Lowest and highest rule priority a listener accepts.
const PRIORITIES: std::ops::RangeInclusive<u32> = 1..=50_000;

/// A listener rule, as far as routing previews is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub arn: String,
    pub priority: u32,
    /// Values of its `host-header` condition; `None` when it has none, so any host matches.
    pub hosts: Option<Vec<String>>,
    /// Its `host-header` condition is made of regular expressions only, which are not
    /// evaluated here: such a rule is not counted as taking preview hosts.
    pub regex_hosts_only: bool,
    /// Fields of its other conditions (`path-pattern`, `source-ip`, …).
    pub other_conditions: Vec<String>,
    /// Target groups it forwards to (with a weight above zero).
    pub forwards_to: Vec<String>,
    /// Its action types, in order (`forward`, `redirect`, `fixed-response`, …).
    pub actions: Vec<String>,
}

impl RuleView {
    fn has_wildcard(&self, suffix: &str) -> bool {
        self.hosts
            .iter()
            .flatten()
            .any(|host| is_wildcard(host, suffix))
    }

    /// Whether it can take requests for a preview host.
    fn takes_preview_hosts(&self, suffix: &str) -> bool {
        match &self.hosts {
            Some(hosts) => hosts.iter().any(|h| may_match_preview_host(h, suffix)),
            None => !self.regex_hosts_only,
        }
    }

    /// A rule made for the proxy alone: the wildcard host and nothing else.
    fn is_dedicated(&self, suffix: &str) -> bool {
        self.other_conditions.is_empty()
            && matches!(&self.hosts, Some(hosts) if hosts.len() == 1 && is_wildcard(&hosts[0], suffix))
    }

    fn describe(&self) -> String {
        let hosts = match &self.hosts {
            Some(hosts) => format!("hosts {}", hosts.join(", ")),
            None if self.regex_hosts_only => "host regular expressions".to_owned(),
            None => "any host".to_owned(),
        };
        format!("{} (priority {}, {hosts})", self.arn, self.priority)
    }
}

/// The registrable part of a host name, taken as its last two labels: cookies a page sets with
/// `Domain=<parent>` reach every host under that parent, down to a public suffix. Treating
/// `co.uk`-like suffixes as registrable only makes the check stricter.
pub fn cookie_site(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// Host patterns of other rules under the same site as the previews (and not under the preview
/// suffix itself): a preview's code can set cookies those hosts read, since browsers let any
/// host set a cookie for its parent domains.
pub fn cookie_neighbours(rules: &[RuleView], suffix: &str) -> Vec<String> {
    let site = cookie_site(suffix);
    let under = |host: &str, domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let mut hosts: Vec<String> = rules
        .iter()
        .flat_map(|r| r.hosts.iter().flatten())
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| {
            let bare = h.trim_start_matches("*.");
            under(bare, &site) && !under(bare, suffix) && !is_wildcard(h, suffix)
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// What the listener's rules come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulePlan {
    /// The wildcard rule forwards to the proxy and nothing before it takes preview hosts.
    Ok { rule_arn: String, priority: u32 },
    /// Something is wrong.
    Problem {
        /// The wildcard rule, when there is one.
        rule_arn: Option<String>,
        problems: Vec<String>,
        fix: String,
        /// What `--fix` would do (nothing when no safe repair exists).
        repairs: Vec<Repair>,
    },
}

/// Examines the listener's rules (the default action is not a rule here).
pub fn plan(
    listener_arn: &str,
    rules: &[RuleView],
    suffix: &str,
    proxy_target_group: &str,
) -> RulePlan {
    let mut rules: Vec<&RuleView> = rules.iter().collect();
    rules.sort_by_key(|r| r.priority);
    let taken: BTreeSet<u32> = rules.iter().map(|r| r.priority).collect();
    let host = wildcard(suffix);
    let create = |before: Option<u32>| {
        let priority = free_priority(&taken, before).or_else(|| free_priority(&taken, None))?;
        Some(Repair::CreateRule {
            listener_arn: listener_arn.to_owned(),
            host: host.clone(),
            target_group_arn: proxy_target_group.to_owned(),
            priority,
        })
    };
    let first_taker = rules
        .iter()
        .find(|r| r.takes_preview_hosts(suffix) && !r.is_dedicated(suffix))
        .map(|r| r.priority);

    let Some(ours) = rules.iter().find(|r| r.has_wildcard(suffix)) else {
        let repair = create(first_taker);
        let mut problems = vec![format!("no rule routes host {host}")];
        if let (Some(taker), Some(Repair::CreateRule { priority, .. })) = (first_taker, &repair) {
            if taker < *priority {
                problems.push(shadow_text(&rules, suffix, *priority));
            }
        }
        return RulePlan::Problem {
            rule_arn: None,
            problems,
            fix: format!(
                "create a rule on the listener: host-header {host} → forward to \
                 {proxy_target_group}, at a priority before any rule that can match a preview \
                 host{}",
                repair
                    .as_ref()
                    .map(|r| format!(" ({})", describe_priority(r)))
                    .unwrap_or_default()
            ),
            repairs: repair.into_iter().collect(),
        };
    };

    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let mut repairs = Vec::new();
    let dedicated = ours.is_dedicated(suffix);
    let forwards_right = ours.forwards_to == [proxy_target_group]
        && ours.actions.last().is_some_and(|a| a == "forward");
    if !forwards_right {
        problems.push(if ours.forwards_to.is_empty() {
            format!(
                "rule {} for {host} does not forward (actions: {}), so previews never reach the proxy",
                ours.arn,
                ours.actions.join(", ")
            )
        } else {
            format!(
                "rule {} for {host} forwards to {} instead of the proxy's target group {proxy_target_group}",
                ours.arn,
                ours.forwards_to.join(", ")
            )
        });
    }
    if !ours.other_conditions.is_empty() {
        problems.push(format!(
            "rule {} for {host} also requires {} conditions, so other preview requests miss the proxy",
            ours.arn,
            ours.other_conditions.join(", ")
        ));
    }
    let shadowed = rules
        .iter()
        .any(|r| r.priority < ours.priority && r.takes_preview_hosts(suffix));
    if shadowed {
        problems.push(shadow_text(&rules, suffix, ours.priority));
    }
    if problems.is_empty() {
        return RulePlan::Ok {
            rule_arn: ours.arn.clone(),
            priority: ours.priority,
        };
    }

    let before_takers = first_taker.filter(|t| *t < ours.priority);
    if dedicated {
        if !forwards_right {
            fixes.push(format!(
                "make rule {} forward to {proxy_target_group}",
                ours.arn
            ));
            repairs.push(Repair::Repoint {
                rule_arn: ours.arn.clone(),
                target_group_arn: proxy_target_group.to_owned(),
            });
        }
        if shadowed {
            match free_priority(&taken, before_takers) {
                Some(priority) => {
                    fixes.push(format!(
                        "move rule {} to priority {priority}, before the rules that shadow it",
                        ours.arn
                    ));
                    repairs.push(Repair::Move {
                        rule_arn: ours.arn.clone(),
                        priority,
                    });
                }
                None => fixes.push(
                    "delete the rules that shadow it (`cca sweep` removes per-session rules \
                     left behind), or move them after it"
                        .to_owned(),
                ),
            }
        }
    } else {
        // The rule serves more than previews: leave it alone and put a rule of our own first.
        let before = Some(before_takers.unwrap_or(ours.priority));
        match free_priority(&taken, before) {
            Some(priority) => {
                fixes.push(format!(
                    "create a rule of its own at priority {priority}: host-header {host} → \
                     forward to {proxy_target_group}"
                ));
                repairs.push(Repair::CreateRule {
                    listener_arn: listener_arn.to_owned(),
                    host: host.clone(),
                    target_group_arn: proxy_target_group.to_owned(),
                    priority,
                });
            }
            None => fixes.push(format!(
                "change rule {} to host-header {host} alone, forwarding to {proxy_target_group}, \
                 and clear what shadows it",
                ours.arn
            )),
        }
    }
    RulePlan::Problem {
        rule_arn: Some(ours.arn.clone()),
        problems,
        fix: fixes.join("; "),
        repairs,
    }
}

/// The rules evaluated before `priority` that can take preview hosts, as a sentence.
fn shadow_text(rules: &[&RuleView], suffix: &str, priority: u32) -> String {
    let takers: Vec<String> = rules
        .iter()
        .filter(|r| r.priority < priority && r.takes_preview_hosts(suffix))
        .map(|r| r.describe())
        .collect();
    format!(
        "rules evaluated before priority {priority} take preview hosts: {}",
        takers.join("; ")
    )
}

fn describe_priority(repair: &Repair) -> String {
    match repair {
        Repair::CreateRule { priority, .. } | Repair::Move { priority, .. } => {
            format!("priority {priority} is free")
        }
        _ => String::new(),
    }
}

/// The lowest priority not taken, below `before` when given.
fn free_priority(taken: &BTreeSet<u32>, before: Option<u32>) -> Option<u32> {
    PRIORITIES
        .take_while(|p| before.is_none_or(|b| *p < b))
        .find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = "uat.example.com";
    const LISTENER: &str = "arn:listener";
    const PROXY: &str = "arn:tg/proxy";
    const OTHER: &str = "arn:tg/other";

    fn rule(name: &str, priority: u32, hosts: &[&str], to: &str) -> RuleView {
        RuleView {
            arn: format!("arn:rule/{name}"),
            priority,
            hosts: (!hosts.is_empty()).then(|| hosts.iter().map(|h| h.to_string()).collect()),
            regex_hosts_only: false,
            other_conditions: Vec::new(),
            forwards_to: vec![to.to_owned()],
            actions: vec!["forward".to_owned()],
        }
    }

    fn problem(plan: RulePlan) -> (Vec<String>, Vec<Repair>) {
        match plan {
            RulePlan::Problem {
                problems, repairs, ..
            } => (problems, repairs),
            RulePlan::Ok { .. } => panic!("expected a problem"),
        }
    }

    #[test]
    fn a_wildcard_rule_to_the_proxy_is_ok_beside_other_applications() {
        let rules = [
            rule("app", 1, &["app.example.com"], OTHER),
            rule("ours", 10, &["*.UAT.example.com"], PROXY),
            rule("late", 20, &["*.uat.example.com"], OTHER),
        ];
        assert_eq!(
            plan(LISTENER, &rules, SUFFIX, PROXY),
            RulePlan::Ok {
                rule_arn: "arn:rule/ours".into(),
                priority: 10
            }
        );
    }

    #[test]
    fn a_missing_rule_is_created_at_the_lowest_free_priority() {
        let rules = [
            rule("a", 1, &["app.example.com"], OTHER),
            rule("b", 2, &["api.example.com"], OTHER),
        ];
        let (problems, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert_eq!(problems, ["no rule routes host *.uat.example.com"]);
        assert_eq!(
            repairs,
            [Repair::CreateRule {
                listener_arn: LISTENER.into(),
                host: "*.uat.example.com".into(),
                target_group_arn: PROXY.into(),
                priority: 3
            }]
        );
    }

    #[test]
    fn a_missing_rule_goes_before_leftovers_when_it_can() {
        let rules = [
            rule("a", 1, &["app.example.com"], OTHER),
            rule("left", 5, &["k7mqz2hd.uat.example.com"], OTHER),
        ];
        let (_, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert!(matches!(
            repairs[..],
            [Repair::CreateRule { priority: 2, .. }]
        ));

        // Nothing free before the leftover: created anyway, and the shadow is reported.
        let rules = [rule("left", 1, &["k7mqz2hd.uat.example.com"], OTHER)];
        let (problems, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert!(matches!(
            repairs[..],
            [Repair::CreateRule { priority: 2, .. }]
        ));
        assert!(
            problems[1].contains("arn:rule/left (priority 1"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_dedicated_rule_forwarding_elsewhere_is_repointed() {
        let rules = [rule("ours", 10, &["*.uat.example.com"], OTHER)];
        let (problems, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("forwards to arn:tg/other instead"));
        assert_eq!(
            repairs,
            [Repair::Repoint {
                rule_arn: "arn:rule/ours".into(),
                target_group_arn: PROXY.into()
            }]
        );
    }

    #[test]
    fn a_shared_rule_is_left_alone_and_preceded() {
        let rules = [rule(
            "shared",
            10,
            &["*.uat.example.com", "tt.example.com"],
            OTHER,
        )];
        let (_, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert!(matches!(
            repairs[..],
            [Repair::CreateRule { priority: 1, .. }]
        ));
    }

    #[test]
    fn a_shadowed_rule_moves_before_what_shadows_it() {
        let mut catch_all = rule("all", 3, &[], OTHER);
        catch_all.other_conditions = vec!["path-pattern".into()];
        let rules = [
            rule("a", 1, &["app.example.com"], OTHER),
            catch_all,
            rule("ours", 10, &["*.uat.example.com"], PROXY),
        ];
        let (problems, repairs) = problem(plan(LISTENER, &rules, SUFFIX, PROXY));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("arn:rule/all (priority 3, any host)"));
        assert_eq!(
            repairs,
            [Repair::Move {
                rule_arn: "arn:rule/ours".into(),
                priority: 2
            }]
        );
    }

    #[test]
    fn regex_only_rules_are_not_counted_as_shadows() {
        let mut regex = rule("re", 1, &[], OTHER);
        regex.regex_hosts_only = true;
        let rules = [regex, rule("ours", 10, &["*.uat.example.com"], PROXY)];
        assert!(matches!(
            plan(LISTENER, &rules, SUFFIX, PROXY),
            RulePlan::Ok { .. }
        ));
    }

    #[test]
    fn free_priorities() {
        let taken: BTreeSet<u32> = [1, 2, 4].into();
        assert_eq!(free_priority(&taken, None), Some(3));
        assert_eq!(free_priority(&taken, Some(3)), None);
        assert_eq!(free_priority(&taken, Some(4)), Some(3));
    }

    #[test]
    fn hosts_sharing_the_previews_site_are_named() {
        let rule = |hosts: &[&str]| RuleView {
            arn: "r".into(),
            priority: 1,
            hosts: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
            regex_hosts_only: false,
            other_conditions: Vec::new(),
            forwards_to: Vec::new(),
            actions: vec!["forward".into()],
        };
        let rules = [
            rule(&["*.uat.example.com"]),
            rule(&["app.example.com", "example.com"]),
            rule(&["x.uat.example.com"]),
            rule(&["shop.other.com"]),
        ];
        assert_eq!(cookie_site("uat.example.com"), "example.com");
        assert_eq!(
            cookie_neighbours(&rules, "uat.example.com"),
            vec!["app.example.com".to_owned(), "example.com".to_owned()]
        );
        assert!(cookie_neighbours(&rules, "previews.test").is_empty());
    }
}
