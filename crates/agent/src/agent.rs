//! The agent loop as a handle: [`start`] takes a [`Task`] (instructions, the conversation so far,
//! the tools, the model, the limits, a cancellation token) and returns an [`AgentRun`], a stream
//! of [`AgentEvent`]s that ends with exactly one [`AgentEvent::Finished`]. Every front end (the
//! `kodiai run` command, the job workers, later the API's sessions) is a client of this handle.
//!
//! Words: a *run* is one call of [`start`]; a *turn* is one model call of a run and the tool
//! calls it asks for.
//!
//! ```text
//! caller            run (spawned task)             model              tools
//!   | start(task) ---> |                             |                  |
//!   | <- turn_started  | --- request (conversation) ->|                  |
//!   | <- text_delta    | <------------- streamed text |                  |
//!   | <- tool_call     | <------------- tool call     |                  |
//!   | <- usage         | <------------- finished      |                  |
//!   |                  | --- dispatch_all (parallel when none writes) --> |
//!   | <- tool_result   | <--------------------------------------- results |
//!   | <- turn_started  | --- request (+ answer, + results) ->|           |
//!   | <- text_delta    | <------------- text, no tool calls  |           |
//!   | <- finished      |  (completed)                                     |
//! ```
//!
//! The run stops when the model answers without tool calls (`completed`), before a model call
//! beyond `max_turns` (`max_turns`), before a model call once the cost reached the budget
//! (`budget`), when the time limit passes (`timeout`, in the middle of a model call or a tool
//! call too), on cancellation (`cancelled`), or when the model call fails or a tool hits a broken
//! invariant (`error`, after an [`AgentEvent::Error`]). The limits are checked between turns, so
//! the tool calls of the last turn run and their results are kept in the conversation.
//!
//! Architecture Invariant: the loop knows models and tools only through [`Provider`] and
//! [`ToolRouter`]; nothing of GitHub, HTTP serving or the database.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kodiai_llm::{
    ChatRequest, ContentBlock, Message, ModelSettings, PriceTable, Provider, ResponseBuilder, Role,
    StreamEvent, Usage,
};
use kodiai_protocol::{AgentEvent, FinishReason, TokenUsage};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::tools::{ToolContext, ToolRouter};

/// When a run must stop even if the model still wants to go on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Model calls at most.
    pub max_turns: u32,
    /// Wall-clock time of the whole run; `None`: no limit.
    pub timeout: Option<Duration>,
    /// USD of model calls at most (priced with [`Task::prices`]); `None`: no limit. Checked
    /// before each model call, so the call that crosses it still completes.
    pub budget_usd: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_turns: 50,
            timeout: Some(Duration::from_secs(30 * 60)),
            budget_usd: None,
        }
    }
}

/// Everything one run needs.
#[derive(Clone)]
pub struct Task {
    /// The system prompt.
    pub system: String,
    /// The new request, sent as a user message after [`Task::history`].
    pub instructions: String,
    /// The conversation so far (empty for a new task).
    pub history: Vec<Message>,
    /// The tools the model may call (built over the task's workspace).
    pub tools: ToolRouter,
    /// The model.
    pub model: Arc<dyn Provider>,
    /// How the model is asked (its name, max tokens, temperature).
    pub settings: ModelSettings,
    /// Prices for the cost budget and the usage events.
    pub prices: PriceTable,
    pub limits: Limits,
    /// Cancels the run; [`AgentRun::cancel`] does the same.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("model", &self.model.name())
            .field("settings", &self.settings)
            .field("tools", self.tools.registry())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// A new task with default limits, built-in prices and no history.
    pub fn new(
        instructions: impl Into<String>,
        model: Arc<dyn Provider>,
        settings: ModelSettings,
        tools: ToolRouter,
    ) -> Self {
        Self {
            system: String::new(),
            instructions: instructions.into(),
            history: Vec::new(),
            tools,
            model,
            settings,
            prices: PriceTable::builtin(),
            limits: Limits::default(),
            cancel: CancellationToken::new(),
        }
    }
}

/// How a run ended, with what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub reason: FinishReason,
    /// The message of the [`AgentEvent::Error`], when the reason is `error`.
    pub error: Option<String>,
    /// The whole conversation: the history, the instructions, every answer and tool result.
    pub messages: Vec<Message>,
    /// The model's last answer text (partial when stopped in the middle of it).
    pub text: String,
    pub turns: u32,
    pub usage: TokenUsage,
    pub cost_usd: f64,
}

/// A running task: a stream of its events, and a way to stop it.
pub struct AgentRun {
    events: mpsc::Receiver<AgentEvent>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<RunOutcome>,
}

impl std::fmt::Debug for AgentRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRun").finish_non_exhaustive()
    }
}

/// Events buffered between the run and a slow reader before the run waits for it.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Starts a run of `task` on the current Tokio runtime.
pub fn start(task: Task) -> AgentRun {
    let (sender, events) = mpsc::channel(EVENT_BUFFER);
    let cancel = task.cancel.clone();
    let task = tokio::spawn(drive(task, sender));
    AgentRun {
        events,
        cancel,
        task,
    }
}

impl AgentRun {
    /// A handle over a run driven elsewhere in the crate (the CLI backends): the same events,
    /// cancellation and outcome as [`start`]'s.
    pub(crate) fn from_parts(
        events: mpsc::Receiver<AgentEvent>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<RunOutcome>,
    ) -> Self {
        Self {
            events,
            cancel,
            task,
        }
    }

    /// Stops the run: the model call or the tools in flight are abandoned (tools are told
    /// through their context and get a moment to clean up), then `finished` (`cancelled`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's token (for a caller that cancels from elsewhere).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Reads the remaining events, then returns them with the outcome.
    pub async fn collect(mut self) -> (Vec<AgentEvent>, RunOutcome) {
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            events.push(event);
        }
        let outcome = self.outcome().await;
        (events, outcome)
    }

    /// Drops the remaining events and returns the outcome.
    pub async fn outcome(mut self) -> RunOutcome {
        // Read, not close: a closed channel means nobody wants the run, which stops it.
        while self.events.recv().await.is_some() {}
        match self.task.await {
            Ok(outcome) => outcome,
            // The loop itself does not panic; a panic inside a tool or provider does end up here.
            Err(e) => RunOutcome {
                reason: FinishReason::Error,
                error: Some(format!("the agent run failed: {e}")),
                messages: Vec::new(),
                text: String::new(),
                turns: 0,
                usage: TokenUsage::default(),
                cost_usd: 0.0,
            },
        }
    }
}

impl Stream for AgentRun {
    type Item = AgentEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AgentEvent>> {
        self.events.poll_recv(cx)
    }
}

/// How long tools get to clean up (kill their processes) after a timeout or cancellation.
const TOOL_GRACE: Duration = Duration::from_secs(5);

/// Why a turn stopped before its end.
enum Stop {
    Reason(FinishReason),
    Failed(String),
}

struct Run {
    sender: mpsc::Sender<AgentEvent>,
    /// The reader is gone: nobody wants the run any more.
    detached: bool,
    messages: Vec<Message>,
    text: String,
    turns: u32,
    usage: TokenUsage,
    cost_usd: f64,
}

impl Run {
    async fn emit(&mut self, event: AgentEvent) {
        if !self.detached && self.sender.send(event).await.is_err() {
            self.detached = true;
        }
    }

    async fn finish(mut self, reason: FinishReason, error: Option<String>) -> RunOutcome {
        if let Some(message) = &error {
            self.emit(AgentEvent::Error {
                message: message.clone(),
            })
            .await;
        }
        self.emit(AgentEvent::Finished {
            reason,
            turns: self.turns,
            usage: self.usage,
            cost_usd: self.cost_usd,
            text: self.text.clone(),
        })
        .await;
        RunOutcome {
            reason,
            error,
            messages: self.messages,
            text: self.text,
            turns: self.turns,
            usage: self.usage,
            cost_usd: self.cost_usd,
        }
    }
}

fn token_usage(usage: &Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_tokens: usage.cache_read_tokens,
        cache_write_tokens: usage.cache_write_tokens,
    }
}

/// Waits until the run must stop from outside: cancellation, the deadline, or the reader gone
/// (the [`AgentRun`] was dropped, which counts as a cancellation). The CLI backends stop by it
/// too.
pub(crate) async fn stopped(
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    reader: &mpsc::Sender<AgentEvent>,
) -> FinishReason {
    let timeout = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = cancel.cancelled() => FinishReason::Cancelled,
        () = reader.closed() => FinishReason::Cancelled,
        () = timeout => FinishReason::Timeout,
    }
}

async fn drive(task: Task, sender: mpsc::Sender<AgentEvent>) -> RunOutcome {
    let deadline = task.limits.timeout.map(|t| Instant::now() + t);
    let mut messages = task.history;
    messages.push(Message::user(task.instructions));
    let mut run = Run {
        sender,
        detached: false,
        messages,
        text: String::new(),
        turns: 0,
        usage: TokenUsage::default(),
        cost_usd: 0.0,
    };
    let specs = task.tools.registry().specs();
    let provider = task.model.name().to_owned();
    let reader = run.sender.clone();
    loop {
        if task.cancel.is_cancelled() || run.detached {
            return run.finish(FinishReason::Cancelled, None).await;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return run.finish(FinishReason::Timeout, None).await;
        }
        if run.turns >= task.limits.max_turns {
            return run.finish(FinishReason::MaxTurns, None).await;
        }
        if task.limits.budget_usd.is_some_and(|b| run.cost_usd >= b) {
            return run.finish(FinishReason::Budget, None).await;
        }
        run.turns += 1;
        let turn = run.turns;
        run.emit(AgentEvent::TurnStarted { turn }).await;
        run.text.clear();

        // The model call. The conversation moves into the request and back, not copied, so
        // a turn costs the same however long the conversation is.
        let mut request = ChatRequest {
            system: task.system.clone(),
            messages: std::mem::take(&mut run.messages),
            tools: specs.clone(),
            settings: task.settings.clone(),
        };
        let answer = {
            let call = model_turn(&*task.model, &request, turn, &mut run);
            tokio::pin!(call);
            tokio::select! {
                answer = &mut call => answer,
                reason = stopped(&task.cancel, deadline, &reader) => Err(Stop::Reason(reason)),
            }
        };
        run.messages = std::mem::take(&mut request.messages);
        let response = match answer {
            Ok(response) => response,
            Err(Stop::Reason(reason)) => return run.finish(reason, None).await,
            Err(Stop::Failed(message)) => {
                return run.finish(FinishReason::Error, Some(message)).await;
            }
        };
        let usage = token_usage(&response.usage);
        let cost = task
            .prices
            .cost(&provider, &response.model, &response.usage);
        run.usage.add(&usage);
        run.cost_usd += cost;
        run.emit(AgentEvent::Usage {
            turn,
            model: response.model.clone(),
            usage,
            cost_usd: cost,
            total_cost_usd: run.cost_usd,
        })
        .await;
        let calls: Vec<_> = response.message.tool_calls().cloned().collect();
        if !response.message.content.is_empty() {
            run.messages.push(response.message);
        }
        if calls.is_empty() {
            return run.finish(FinishReason::Completed, None).await;
        }

        // The tool calls.
        let ctx = ToolContext {
            cancel: task.cancel.child_token(),
        };
        let results = {
            let dispatch = task.tools.dispatch_all(&calls, &ctx);
            tokio::pin!(dispatch);
            tokio::select! {
                results = &mut dispatch => Ok(results),
                reason = stopped(&task.cancel, deadline, &reader) => {
                    // Tell the tools, and let them stop their processes before we go.
                    ctx.cancel.cancel();
                    let _ = tokio::time::timeout(TOOL_GRACE, &mut dispatch).await;
                    Err(reason)
                }
            }
        };
        let results = match results {
            Ok(Ok(results)) => results,
            Ok(Err(fatal)) => {
                return run
                    .finish(FinishReason::Error, Some(fatal.to_string()))
                    .await;
            }
            Err(reason) => return run.finish(reason, None).await,
        };
        let mut content = Vec::with_capacity(results.len());
        for result in results {
            run.emit(AgentEvent::ToolResult {
                turn,
                call_id: result.call_id.clone(),
                name: result.name,
                content: result.output.content.clone(),
                is_error: result.output.is_error,
            })
            .await;
            content.push(ContentBlock::ToolResult {
                tool_use_id: result.call_id,
                content: result.output.content,
                is_error: result.output.is_error,
            });
        }
        run.messages.push(Message {
            role: Role::User,
            content,
        });
    }
}

/// One model call: forwards text deltas and tool calls as they stream, and returns the answer.
async fn model_turn(
    model: &dyn Provider,
    request: &ChatRequest,
    turn: u32,
    run: &mut Run,
) -> Result<kodiai_llm::ChatResponse, Stop> {
    let mut stream = model
        .stream(request)
        .await
        .map_err(|e| Stop::Failed(format!("the model call failed: {e}")))?;
    let mut builder = ResponseBuilder::default();
    while let Some(event) = stream.next().await {
        let event =
            event.map_err(|e| Stop::Failed(format!("the model's answer broke off: {e}")))?;
        match &event {
            StreamEvent::TextDelta(text) => {
                run.text.push_str(text);
                run.emit(AgentEvent::TextDelta {
                    turn,
                    text: text.clone(),
                })
                .await;
            }
            StreamEvent::ToolCall(call) => {
                run.emit(AgentEvent::ToolCall {
                    turn,
                    call: call.clone(),
                })
                .await;
            }
            StreamEvent::ThinkingDelta(_)
            | StreamEvent::Thinking { .. }
            | StreamEvent::Finished { .. } => {}
        }
        builder.push(&event);
    }
    builder.finish().ok_or_else(|| {
        Stop::Failed(format!(
            "the model's answer ended without its final event ({})",
            model.name()
        ))
    })
}
