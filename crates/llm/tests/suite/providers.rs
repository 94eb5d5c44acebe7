//! The behaviours every provider must have, each run against each API's fake.

use std::sync::Arc;
use std::time::Duration;

use kodiai_llm::{
    CallOutcome, ContentBlock, Error, Message, Provider, Role, StopReason, StreamEvent, Usage,
};
use kodiai_test_support::llm::{FakeError, FakeLlm, FakeUsage, Reply};
use serde_json::json;

use super::common::{KEY, MemoryRecorder, collect, llm, provider, provider_name, request};
use crate::per_api;

per_api!(streams_text_split_at_every_byte, |api| {
    let fake = FakeLlm::start(api).await;
    // One byte per chunk: every event and every UTF-8 character arrives in pieces.
    fake.push(
        Reply::text("Grüße aus kodiai, the answer is 42.")
            .with_usage(FakeUsage {
                input: 120,
                output: 9,
                cache_read: 30,
                cache_write: 0,
            })
            .chunked(1),
    );
    let p = provider(&fake);
    let items = collect(p.as_ref(), &request("hello")).await.unwrap();
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() > 3, "streamed in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), "Grüße aus kodiai, the answer is 42.");
    let Some(StreamEvent::Finished {
        stop_reason, usage, ..
    }) = events.last()
    else {
        panic!("the last event is Finished: {events:?}");
    };
    assert_eq!(*stop_reason, StopReason::EndTurn);
    assert_eq!(
        *usage,
        Usage {
            input_tokens: 120,
            output_tokens: 9,
            cache_read_tokens: 30,
            cache_write_tokens: 0,
        }
    );
    fake.assert_invariants();
});

per_api!(a_tool_call_whose_arguments_arrive_in_many_deltas, |api| {
    let fake = FakeLlm::start(api).await;
    let arguments = json!({"path": "src/main.rs", "lines": [1, 40], "note": "ünïcode \"quoted\""});
    fake.push(
        Reply::tool_calls(&[("call_a1", "read_file", arguments.clone())])
            .with_text("Let me look.")
            .argument_pieces(1)
            .chunked(7),
    );
    let response = provider(&fake).complete(&request("read it")).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.message.role, Role::Assistant);
    assert_eq!(response.message.text(), "Let me look.");
    let calls: Vec<_> = response.message.tool_calls().cloned().collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "call_a1");
    assert_eq!(calls[0].name, "read_file");
    assert_eq!(calls[0].arguments, arguments);
});

per_api!(two_parallel_tool_calls_and_their_results, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::tool_calls(&[
        ("call_1", "read_file", json!({"path": "a.rs"})),
        ("call_2", "read_file", json!({"path": "b.rs"})),
    ]));
    fake.push(Reply::text("Both files are empty."));
    let p = provider(&fake);
    let mut req = request("read a.rs and b.rs");
    let first = p.complete(&req).await.unwrap();
    let calls: Vec<_> = first.message.tool_calls().cloned().collect();
    assert_eq!(
        calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["call_1", "call_2"]
    );
    assert_eq!(calls[1].arguments, json!({"path": "b.rs"}));
    // Both results go back in one turn; the fake checks each answers a call of the last turn.
    req.messages.push(first.message);
    req.messages.push(Message {
        role: Role::User,
        content: calls
            .iter()
            .map(|c| ContentBlock::tool_result(c.id.clone(), "(empty)"))
            .collect(),
    });
    let second = p.complete(&req).await.unwrap();
    assert_eq!(second.message.text(), "Both files are empty.");
    fake.assert_invariants();
    assert_eq!(fake.requests().len(), 2);
});

per_api!(
    a_tool_result_for_an_unknown_call_is_refused_by_the_fake,
    |api| {
        let fake = FakeLlm::start(api).await;
        fake.push(Reply::text("never sent"));
        let mut req = request("hi");
        req.messages.push(Message::assistant("hello"));
        req.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::tool_result("call_nobody_made", "x")],
        });
        let error = provider(&fake).complete(&req).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidRequest { status: 400, .. }),
            "{error}"
        );
        assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());
    }
);

per_api!(paused rate_limited_then_retried_after_retry_after, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::error(FakeError::RateLimited {
        retry_after_secs: Some(7),
    }));
    fake.push(Reply::text("done"));
    let recorder = Arc::new(MemoryRecorder::default());
    let llm = llm(&[(&fake, "model-a")], recorder.clone());
    let started = tokio::time::Instant::now();
    let response = llm.complete(&request("hi")).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.message.text(), "done");
    // Paused time: the only timer that ran was the retry's wait, exactly the retry-after.
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert_eq!(fake.requests().len(), 2);
    let calls = recorder.calls();
    assert_eq!(
        calls.iter().map(|c| c.outcome).collect::<Vec<_>>(),
        [CallOutcome::Error, CallOutcome::Ok]
    );
    assert_eq!(calls[0].error.as_ref().unwrap().0, "rate_limited");
});

per_api!(paused overloaded_is_retried_then_the_fallback_model_answers, |api| {
    let primary = FakeLlm::start(api).await;
    let fallback = FakeLlm::start(api).await;
    // The policy retries twice: three overloaded answers use the primary up.
    for _ in 0..3 {
        primary.push(Reply::error(FakeError::Overloaded));
    }
    fallback.push(Reply::text("from the fallback").with_model("model-b"));
    let recorder = Arc::new(MemoryRecorder::default());
    let llm = llm(&[(&primary, "model-a"), (&fallback, "model-b")], recorder.clone());
    let response = llm.complete(&request("hi")).await.unwrap();
    assert_eq!(response.message.text(), "from the fallback");
    assert_eq!(primary.requests().len(), 3);
    let sent = &fallback.requests()[0];
    match api {
        kodiai_test_support::llm::Api::Gemini => {
            assert_eq!(sent.path, "/v1beta/models/model-b:streamGenerateContent");
        }
        _ => assert_eq!(sent.body["model"], "model-b"),
    }
    let calls = recorder.calls();
    let models: Vec<_> = calls.iter().map(|c| (c.model.as_str(), c.outcome)).collect();
    assert_eq!(
        models,
        [
            ("model-a", CallOutcome::Error),
            ("model-a", CallOutcome::Error),
            ("model-a", CallOutcome::Error),
            ("model-b", CallOutcome::Ok),
        ]
    );
    assert_eq!(calls[0].error.as_ref().unwrap().0, "overloaded");
    assert_eq!(calls[0].provider, provider_name(api));
});

per_api!(a_context_window_error_is_typed_and_not_retried, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::error(FakeError::ContextWindowExceeded));
    let recorder = Arc::new(MemoryRecorder::default());
    let llm = llm(&[(&fake, "model-a")], recorder.clone());
    let error = llm
        .complete(&request("a very long prompt"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ContextWindowExceeded { .. }),
        "{error}"
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(
        recorder.calls()[0].error.as_ref().unwrap().0,
        "context_window_exceeded"
    );
});

per_api!(an_authentication_error_is_typed_and_not_retried, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::error(FakeError::Unauthorized));
    let recorder = Arc::new(MemoryRecorder::default());
    let error = llm(&[(&fake, "m")], recorder)
        .complete(&request("hi"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Authentication { .. }), "{error}");
    assert!(!error.to_string().contains(KEY));
    assert_eq!(fake.requests().len(), 1);
});

per_api!(a_stream_cut_in_the_middle_is_an_error, |api| {
    let fake = FakeLlm::start(api).await;
    let text = "one two three four five six seven eight nine ten eleven twelve";
    fake.push(Reply::text(text).chunked(16).cut_after(900));
    let recorder = Arc::new(MemoryRecorder::default());
    let llm = llm(&[(&fake, "m")], recorder.clone());
    let items = collect(&llm, &request("count")).await.unwrap();
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().all(Result::is_ok));
    assert!(
        before
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::TextDelta(_)))),
        "some text came before the cut"
    );
    let error = last.as_ref().unwrap_err();
    assert!(
        matches!(error, Error::Network { .. } | Error::BadResponse { .. }),
        "{error}"
    );
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::Finished { .. })))
    );
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, CallOutcome::Error);
    assert!(calls[0].time_to_first_token.is_some());
});

per_api!(
    a_stream_that_ends_before_its_final_event_is_an_error,
    |api| {
        let fake = FakeLlm::start(api).await;
        // The body ends cleanly after four events: no message_stop, finish_reason or finishReason.
        fake.push(Reply::text("one two three four five six").end_after_events(4));
        let error = provider(&fake)
            .complete(&request("count"))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::BadResponse { .. }), "{error}");
        assert!(error.to_string().contains("incomplete"), "{error}");
    }
);

per_api!(paused a_silent_server_times_out_and_the_retry_succeeds, |api| {
    let fake = FakeLlm::start(api).await;
    // Longer than the first-byte timeout (30 s in these tests).
    fake.push(Reply::text("late").delayed(Duration::from_secs(45)));
    fake.push(Reply::text("on time"));
    let recorder = Arc::new(MemoryRecorder::default());
    let response = llm(&[(&fake, "m")], recorder.clone())
        .complete(&request("hi"))
        .await
        .unwrap();
    assert_eq!(response.message.text(), "on time");
    assert_eq!(recorder.calls()[0].error.as_ref().unwrap().0, "timeout");
});

per_api!(thinking_is_streamed_and_kept_as_a_block, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::text("42").with_thinking("six times seven"));
    let response = provider(&fake).complete(&request("think")).await.unwrap();
    let thinking: Vec<_> = response
        .message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Thinking { thinking, .. } => Some(thinking.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, ["six times seven"]);
    assert_eq!(response.message.text(), "42");
});

per_api!(paused an_error_event_before_any_content_is_retried, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::text("never").error_event_after(0, FakeError::Overloaded));
    fake.push(Reply::text("second try"));
    let recorder = Arc::new(MemoryRecorder::default());
    let response = llm(&[(&fake, "m")], recorder.clone())
        .complete(&request("hi"))
        .await
        .unwrap();
    assert_eq!(response.message.text(), "second try");
    assert_eq!(fake.requests().len(), 2);
    assert!(recorder.calls()[0].error.as_ref().unwrap().1.contains("Overloaded"));
});

per_api!(
    an_error_event_after_content_ends_the_stream_with_that_error,
    |api| {
        let fake = FakeLlm::start(api).await;
        fake.push(
            Reply::text("one two three four five six").error_event_after(5, FakeError::Overloaded),
        );
        let recorder = Arc::new(MemoryRecorder::default());
        let llm = llm(&[(&fake, "m")], recorder.clone());
        let items = collect(&llm, &request("count")).await.unwrap();
        let (last, before) = items.split_last().unwrap();
        assert!(
            before
                .iter()
                .any(|e| matches!(e, Ok(StreamEvent::TextDelta(_))))
        );
        let error = last.as_ref().unwrap_err();
        assert!(error.is_retryable(), "{error}");
        // Not retried behind the caller's back: it has shown the text already.
        assert_eq!(fake.requests().len(), 1);
        assert_eq!(recorder.calls()[0].outcome, CallOutcome::Error);
    }
);

per_api!(paused a_stream_that_goes_silent_times_out, |api| {
    let fake = FakeLlm::start(api).await;
    let text = "one two three four five six seven eight nine ten eleven twelve";
    // 45 s of silence in the middle; the idle timeout of these tests is 30 s.
    fake.push(Reply::text(text).chunked(20).stall_after(1000, Duration::from_secs(45)));
    let items = collect(provider(&fake).as_ref(), &request("count"))
        .await
        .unwrap();
    let (last, before) = items.split_last().unwrap();
    assert!(before.iter().any(|e| matches!(e, Ok(StreamEvent::TextDelta(_)))));
    assert!(
        matches!(last, Err(Error::Timeout { .. })),
        "{last:?}"
    );
});

per_api!(a_dropped_stream_is_recorded_as_cancelled, |api| {
    let fake = FakeLlm::start(api).await;
    fake.push(Reply::text("one two three four five"));
    let recorder = Arc::new(MemoryRecorder::default());
    let llm = llm(&[(&fake, "m")], recorder.clone());
    let req = request("hi");
    let mut stream = llm.stream(&req).await.unwrap();
    let first = futures::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, StreamEvent::TextDelta(_)));
    drop(stream);
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, CallOutcome::Cancelled);
    assert!(calls[0].time_to_first_token.is_some());
});

#[tokio::test]
async fn gemini_thought_signatures_go_back_on_their_function_call() {
    let fake = FakeLlm::start(kodiai_test_support::llm::Api::Gemini).await;
    fake.push(Reply::tool_calls(&[
        ("call_1", "read_file", json!({"path": "a.rs"})),
        ("call_2", "read_file", json!({"path": "b.rs"})),
    ]));
    fake.push(Reply::text("ok"));
    let p = provider(&fake);
    let mut req = request("read both");
    let first = p.complete(&req).await.unwrap();
    assert!(matches!(
        &first.message.content[0],
        ContentBlock::Thinking { signature: Some(s), .. } if s == "sig-call_1"
    ));
    let ids: Vec<String> = first.message.tool_calls().map(|c| c.id.clone()).collect();
    req.messages.push(first.message);
    req.messages.push(Message {
        role: Role::User,
        content: ids
            .iter()
            .map(|id| ContentBlock::tool_result(id.clone(), "x"))
            .collect(),
    });
    p.complete(&req).await.unwrap();
    let sent = &fake.requests()[1].body["contents"][1]["parts"];
    assert_eq!(sent[0]["thoughtSignature"], "sig-call_1");
    assert_eq!(sent[0]["functionCall"]["id"], "call_1");
    assert!(sent[1].get("thoughtSignature").is_none());
    fake.assert_invariants();
}
