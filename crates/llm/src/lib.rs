//! Model providers behind one streaming trait: Anthropic Messages, OpenAI-compatible Chat
//! Completions and Gemini, with retries, timeouts, a fallback chain and per-call accounting.
