//! `kodiai bench agent`: the agent loop's own cost per turn. An in-process model that answers at
//! once (a tool call each turn, then a final text) and a tool that returns at once leave only
//! the loop: building each request from the conversation, forwarding the events, dispatching
//! the calls and appending their results. Target (issue 7): under 1 ms per turn.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kodiai_agent::tools::{Tool, ToolContext, ToolOutput, ToolRegistry, ToolResult, ToolRouter};
use kodiai_agent::{Limits, Task};
use kodiai_llm::{
    ChatRequest, EventStream, ModelSettings, PriceTable, Provider, Role, StopReason, StreamEvent,
    ToolCall, Usage,
};
use kodiai_protocol::{AgentEvent, FinishReason};

/// Answers every request at once: a tool call until `turns - 1` answers were given, then text.
struct InstantModel {
    turns: u32,
}

impl Provider for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }

    fn stream<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, kodiai_llm::Result<EventStream>> {
        let answered = request
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        let last = u32::try_from(answered).unwrap_or(u32::MAX) + 1 >= self.turns;
        let mut events = vec![Ok(StreamEvent::TextDelta("Looking. ".into()))];
        if !last {
            events.push(Ok(StreamEvent::ToolCall(ToolCall {
                id: format!("call_{answered}"),
                name: "noop".into(),
                arguments: serde_json::json!({"n": answered}),
            })));
        }
        events.push(Ok(StreamEvent::Finished {
            stop_reason: if last {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            },
            usage: Usage {
                input_tokens: 100,
                output_tokens: 10,
                ..Usage::default()
            },
            model: "instant".into(),
        }));
        let stream: EventStream = Box::pin(futures::stream::iter(events));
        Box::pin(async move { Ok(stream) })
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoopArgs {
    /// Any number.
    #[allow(dead_code, reason = "parsed to measure the argument parsing too")]
    n: usize,
}

/// Returns at once.
struct Noop;

impl Tool for Noop {
    type Args = NoopArgs;

    fn name(&self) -> &str {
        "noop"
    }

    fn description(&self) -> String {
        "Does nothing.".into()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, _args: NoopArgs, _ctx: &ToolContext) -> ToolResult {
        Ok(ToolOutput::text("done"))
    }
}

/// One measured run.
struct Row {
    turns: u32,
    events: usize,
    total: Duration,
}

async fn measure(turns: u32) -> anyhow::Result<Row> {
    let mut registry = ToolRegistry::new();
    registry.register(Arc::new(Noop))?;
    let mut task = Task::new(
        "Benchmark the loop.",
        Arc::new(InstantModel { turns }),
        ModelSettings::new("instant"),
        ToolRouter::new(registry),
    );
    task.prices = PriceTable::builtin();
    task.limits = Limits {
        max_turns: turns,
        timeout: None,
        budget_usd: None,
    };
    let started = Instant::now();
    let (events, outcome) = kodiai_agent::start(task).collect().await;
    let total = started.elapsed();
    anyhow::ensure!(
        outcome.reason == FinishReason::Completed && outcome.turns == turns,
        "the benchmark run ended with {} after {} turns",
        outcome.reason,
        outcome.turns
    );
    anyhow::ensure!(matches!(events.last(), Some(AgentEvent::Finished { .. })));
    Ok(Row {
        turns,
        events: events.len(),
        total,
    })
}

/// Runs tasks of each length in `turns` and prints the table.
pub async fn agent(turns: &[u32]) -> anyhow::Result<String> {
    // One short run first, so that the first row does not pay for warming up.
    measure(2).await?;
    let mut rows = Vec::new();
    for &n in turns {
        rows.push(measure(n).await?);
    }
    let mut out = String::new();
    writeln!(
        out,
        "agent loop, instant in-process model and tool (target: under 1 ms per turn)"
    )?;
    writeln!(
        out,
        "{:>7} {:>8} {:>12} {:>16}",
        "turns", "events", "total ms", "per turn µs"
    )?;
    for row in &rows {
        let per_turn = row.total.as_secs_f64() * 1e6 / f64::from(row.turns);
        writeln!(
            out,
            "{:>7} {:>8} {:>12.2} {:>16.1}",
            row.turns,
            row.events,
            row.total.as_secs_f64() * 1e3,
            per_turn
        )?;
    }
    writeln!(
        out,
        "the conversation moves into each request (not copied), so a turn costs the same as it grows"
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_benchmark_runs_its_turns_to_completion() {
        let row = measure(5).await.unwrap();
        assert_eq!(row.turns, 5);
        // Per turn: turn_started, text, usage; 4 turns with a tool call and a result; finished.
        assert_eq!(row.events, 5 * 3 + 4 * 2 + 1);
        let table = agent(&[3]).await.unwrap();
        assert!(table.contains("per turn µs"), "{table}");
    }
}
