//! Lambda mode: one handler for every event the function receives. HTTP events (API Gateway
//! v2, Function URL, ALB) go to the [`router`](crate::router), converted both ways by
//! `lambda_http` exactly as `lambda_http::run` converts them; an EventBridge scheduled event runs
//! the sweeper and answers with its report.

use std::sync::Arc;

use axum::Router;
use cca_sweep::Sweeper;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::App;
use crate::app::now;

/// Serves invocations until the runtime stops.
pub async fn run(app: Arc<App>, sweeper: Sweeper) -> Result<(), Error> {
    let router = crate::router(app.clone());
    let sweeper = Arc::new(sweeper);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (router, sweeper, app) = (router.clone(), Arc::clone(&sweeper), app.clone());
        async move { handle(router, &app, &sweeper, event).await }
    }))
    .await
}

/// Whether an event is EventBridge's scheduled event
/// (`{"source": "aws.events", "detail-type": "Scheduled Event", …}`).
pub fn is_scheduled(event: &Value) -> bool {
    event.get("source").and_then(Value::as_str) == Some("aws.events")
        && event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

async fn handle(
    router: Router,
    app: &App,
    sweeper: &Sweeper,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if is_scheduled(&payload) {
        let report = sweeper.sweep(now(), false).await;
        // Sessions the sweep ended, or that ended by themselves, leave places to the queue
        // (served even when the sweep could not finish).
        crate::act::start_turns(app, now()).await;
        let report = report?;
        for line in report.lines() {
            tracing::info!(target: "cca_sweep", "{line}");
        }
        if !report.is_clean() {
            tracing::error!(errors = ?report.errors, "the sweep did not complete");
        }
        return Ok(serde_json::to_value(&report)?);
    }
    let request: LambdaRequest = serde_json::from_value(payload)?;
    let response = Adapter::from(router)
        .oneshot(LambdaEvent::new(request, context))
        .await?;
    Ok(serde_json::to_value(response)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_eventbridge_schedules_are_sweeps() {
        let scheduled = json!({
            "version": "0", "id": "53dc4d37", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/sweep"],
            "detail": {}
        });
        assert!(is_scheduled(&scheduled));
        assert!(!is_scheduled(
            &json!({"source": "aws.events", "detail-type": "EC2 Instance State-change Notification"})
        ));
        assert!(!is_scheduled(
            &json!({"version": "2.0", "rawPath": "/webhook", "headers": {}})
        ));
    }
}
