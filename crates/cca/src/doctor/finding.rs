//! The outcome of one check, and the repair `--fix` may make for it.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Problem,
    /// Not checked: an input is not configured, or depends on a check that failed.
    Skipped,
}

/// A change `--fix` can make safely: each only adds or redirects routing to the proxy, never
/// removes anything another application may rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Create the wildcard rule.
    CreateRule {
        listener_arn: String,
        host: String,
        target_group_arn: String,
        priority: u32,
    },
    /// Make the wildcard rule forward to the proxy's target group instead.
    Repoint {
        rule_arn: String,
        target_group_arn: String,
    },
    /// Move the wildcard rule before the rules that shadow it.
    Move { rule_arn: String, priority: u32 },
    /// Admit the load balancer's security group on the proxy port.
    AuthorizeIngress {
        group_id: String,
        source_group_id: String,
        port: u16,
    },
}

impl Repair {
    /// What the repair does, for the report.
    pub fn describe(&self) -> String {
        match self {
            Repair::CreateRule {
                host,
                target_group_arn,
                priority,
                ..
            } => format!(
                "created a rule at priority {priority}: host {host} → forward to {target_group_arn}"
            ),
            Repair::Repoint {
                rule_arn,
                target_group_arn,
            } => format!("rule {rule_arn} now forwards to {target_group_arn}"),
            Repair::Move { rule_arn, priority } => {
                format!("moved rule {rule_arn} to priority {priority}")
            }
            Repair::AuthorizeIngress {
                group_id,
                source_group_id,
                port,
            } => format!("{group_id} now admits {source_group_id} on tcp/{port}"),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Short name of the check, such as `listener-rule`.
    pub check: &'static str,
    /// The resource checked (an ARN, id or name), or the variable that names it.
    pub resource: String,
    pub status: Status,
    /// What is wrong (problems), or why the check did not run (skipped).
    pub problem: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// What was found, when all is well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What `--fix` changed for this check before it was run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
    /// The repairs `--fix` would make.
    #[serde(skip)]
    pub repairs: Vec<Repair>,
}

impl Finding {
    /// All is well with `resource`.
    pub fn ok(check: &'static str, resource: impl Into<String>, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            check,
            resource: resource.into(),
            status: Status::Ok,
            problem: None,
            fix: None,
            detail: (!detail.is_empty()).then_some(detail),
            repaired: None,
            repairs: Vec::new(),
        }
    }

    /// Something is wrong with `resource`.
    pub fn problem(
        check: &'static str,
        resource: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            resource: resource.into(),
            status: Status::Problem,
            problem: Some(problem.into()),
            fix: Some(fix.into()),
            detail: None,
            repaired: None,
            repairs: Vec::new(),
        }
    }

    /// The check did not run, for `reason`.
    pub fn skipped(
        check: &'static str,
        resource: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            check,
            resource: resource.into(),
            status: Status::Skipped,
            problem: Some(reason.into()),
            fix: None,
            detail: None,
            repaired: None,
            repairs: Vec::new(),
        }
    }

    /// A required input of the check is not configured: a problem, since the deployment cannot
    /// be vouched for without it.
    pub fn not_configured(check: &'static str, var: &str, what: &str) -> Self {
        Self::problem(
            check,
            var,
            format!("{var} is not set, so {what} cannot be checked"),
            format!("set {var} (or its flag --{})", flag_of(var)),
        )
    }

    /// The same finding, with one more repair `--fix` would make.
    pub fn with_repair(mut self, repair: Repair) -> Self {
        self.repairs.push(repair);
        self
    }

    /// The report line: `ok    check: resource: detail`, `FAIL  check: resource: problem. Fix:
    /// fix`, or `skip  check: resource: reason`.
    pub fn line(&self) -> String {
        let mut line = match self.status {
            Status::Ok => format!("ok    {}: {}", self.check, self.resource),
            Status::Problem => format!("FAIL  {}: {}", self.check, self.resource),
            Status::Skipped => format!("skip  {}: {}", self.check, self.resource),
        };
        if let Some(detail) = &self.detail {
            line.push_str(&format!(": {detail}"));
        }
        if let Some(problem) = &self.problem {
            line.push_str(&format!(": {}", problem.trim_end_matches('.')));
        }
        if let Some(fix) = &self.fix {
            line.push_str(&format!(". Fix: {fix}"));
            if !self.repairs.is_empty() {
                line.push_str(" (`cca doctor --fix` does this)");
            }
        }
        if let Some(repaired) = &self.repaired {
            line.push_str(&format!(" [--fix {repaired}]"));
        }
        line
    }
}

/// The flag of a variable: `ALB_LISTENER_ARN` is `--alb-listener-arn`.
pub fn flag_of(var: &str) -> String {
    var.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_one_sentence() {
        let ok = Finding::ok("cluster", "cca", "ACTIVE");
        assert_eq!(ok.line(), "ok    cluster: cca: ACTIVE");
        let fail = Finding::problem("sessions-table", "t", "no index pr-index.", "create it");
        assert_eq!(
            fail.line(),
            "FAIL  sessions-table: t: no index pr-index. Fix: create it"
        );
        let skip = Finding::skipped("jira-secret", "JIRA_SECRET_ARN", "not set");
        assert_eq!(skip.line(), "skip  jira-secret: JIRA_SECRET_ARN: not set");
        let unset = Finding::not_configured("cluster", "ECS_CLUSTER", "the cluster");
        assert!(
            unset
                .line()
                .ends_with("Fix: set ECS_CLUSTER (or its flag --ecs-cluster)")
        );
    }
}
