//! The rule brain: a deterministic brain that needs no model, so a node, its demo and its tests
//! work offline.
//!
//! It works through the same tools as a model would. With its owner it recognizes a few
//! intents (remember this; work with a contact; ask the manager) and otherwise answers from
//! memory by retrieval, saying plainly when its memory holds nothing relevant. With a
//! counterpart it negotiates within the bottom line of its value memory: it opens at the
//! owner's target, concedes on a fixed schedule, meets a counterpart half way once their offer
//! is acceptable, never crosses the limit, and ends the conversation resolved or deadlocked.
//! Which situation it is in follows from the tools on offer (only counterpart conversations
//! offer `end_conversation`; only the manager has `list_identities`).
//!
//! In a session it also knows when to bring in another contact: a pattern entry "ask NAME about
//! TOPIC" makes it request a session with NAME when the counterpart raises TOPIC, and once the
//! node notes how that session ended, it relays the answer and carries on. Opening a session
//! whose purpose is a question, it asks it and ends once answered.

use clawnet_protocol::session::EndMarker;
use clawnet_storage::memory::{Amount, Bound, Direction};
use serde_json::{Value, json};

use super::amounts::find_offer;
use super::brain::{Brain, BrainError, BrainReply};
use super::conversation::{Message, NODE_NOTE, Role, ToolCall, ToolSpec};
use super::memory::terms;
use super::tools::{
    BoundView, CONSULT_MANAGER, END_CONVERSATION, LIST_IDENTITIES, MEMORY_RECALL, MEMORY_STORE, REQUEST_COLLABORATION,
};

/// Words that make a message small talk rather than a question.
const GREETINGS: &[&str] = &["hello", "hi", "hey", "thank", "thanks", "good", "morning", "afternoon", "evening", "ok"];

/// Fractions of the way from target to limit for our successive offers.
const CONCESSIONS: [i64; 5] = [0, 40, 70, 90, 100];

/// The deterministic brain.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleBrain;

impl Brain for RuleBrain {
    async fn decide(
        &self,
        conversation: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BrainReply, BrainError> {
        let reply = decide(conversation, tools);
        if let BrainReply::Say(text) = &reply {
            on_text(text);
        }
        Ok(reply)
    }

    fn describe(&self) -> String {
        "rule brain (no model)".into()
    }
}

/// Who the brain is talking to, from the tools on offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Owner,
    Counterpart,
    Manager,
}

/// A tool call of this turn with its result.
struct Done {
    name: String,
    arguments: Value,
    result: Value,
}

fn decide(conversation: &[Message], tools: &[ToolSpec]) -> BrainReply {
    let offered = |name: &str| tools.iter().any(|tool| tool.name == name);
    let mode = if offered(END_CONVERSATION) {
        Mode::Counterpart
    } else if offered(LIST_IDENTITIES) {
        Mode::Manager
    } else {
        Mode::Owner
    };
    let Some(last_user) = conversation.iter().rposition(|m| m.role == Role::User) else {
        return BrainReply::Say("Hello. What can I do for you?".into());
    };
    let done = tool_results(&conversation[last_user + 1..]);
    // After a note from the node, the counterpart's message before it still waits for an answer.
    let note = conversation[last_user].content.starts_with(NODE_NOTE).then(|| conversation[last_user].content.clone());
    let asked_at = match note {
        Some(_) => conversation[..last_user]
            .iter()
            .rposition(|m| m.role == Role::User && !m.content.starts_with(NODE_NOTE))
            .unwrap_or(last_user),
        None => last_user,
    };
    let question = conversation[asked_at].content.trim().to_owned();
    if done.is_empty() {
        return first_step(mode, &question, &offered);
    }
    match mode {
        Mode::Owner => answer_owner(conversation, &question, &done),
        Mode::Manager => answer_manager(&question, &done),
        Mode::Counterpart => {
            let noted = conversation.iter().any(|m| m.role == Role::User && m.content.starts_with(NODE_NOTE));
            let may_ask = offered(REQUEST_COLLABORATION) && !noted;
            let reply = in_session(&conversation[..asked_at], &question, &done, may_ask);
            match note.as_deref().and_then(relayed) {
                Some(relay) => with_prefix(reply, &format!("Our partner confirms: {relay} ")),
                None => reply,
            }
        }
    }
}

/// What the counterpart hears: an answer to their question, or (when a pattern says another
/// contact knows) a request for a session with that contact first.
fn in_session(history: &[Message], question: &str, done: &[Done], may_ask: bool) -> BrainReply {
    if done.iter().any(|d| d.name == REQUEST_COLLABORATION) {
        // Not sent: the node holds our turn until that session ends.
        return BrainReply::Say("Let me check with our partner.".into());
    }
    if let Some(purpose) = opening_question(question) {
        return BrainReply::Say(purpose);
    }
    let opened_with_question = history
        .iter()
        .find(|m| m.role == Role::Assistant && m.tool_calls.is_empty())
        .is_some_and(|m| m.content.trim_end().ends_with('?'))
        && history.iter().find(|m| m.role == Role::User).is_some_and(|m| opening_question(&m.content).is_some());
    if opened_with_question {
        return end("Thank you, that answers our question.".into(), EndMarker::Resolved);
    }
    let patterns: Vec<&str> = done
        .iter()
        .filter(|d| d.arguments["layer"] == "pattern")
        .flat_map(|d| entries(&d.result))
        .filter_map(|e| e["text"].as_str())
        .collect();
    if may_ask && let Some((contact, purpose)) = patterns.iter().find_map(|p| ask_about(p, question)) {
        return BrainReply::Call {
            text: String::new(),
            calls: vec![call(REQUEST_COLLABORATION, json!({ "contact": contact, "purpose": purpose }))],
        };
    }
    answer_counterpart(history, question, done)
}

/// The purpose of a session we open, when it is a question (the node's opening note is "The
/// session with X is open.\nPurpose: P\nYou speak first.").
fn opening_question(message: &str) -> Option<String> {
    let purpose = message.split_once("Purpose: ")?.1.strip_suffix("\nYou speak first.")?;
    purpose.trim().ends_with('?').then(|| purpose.trim().to_owned())
}

/// A pattern "ask NAME about TOPIC" that fits `question`: the contact and what to ask them
/// (the sentence of the question about the topic).
fn ask_about(pattern: &str, question: &str) -> Option<(String, String)> {
    let lower = pattern.to_lowercase();
    let rest = lower.strip_prefix("ask ")?;
    let at = rest.find(" about ")?;
    let contact = pattern[4..4 + at].trim().to_owned();
    let topic = terms(&rest[at + 7..]);
    let related = |term: &String| {
        topic.iter().any(|t| {
            t == term
                || (t.len().min(term.len()) >= 5 && (t.starts_with(term.as_str()) || term.starts_with(t.as_str())))
        })
    };
    let sentence = question
        .split(['.', '?', '!'])
        .map(str::trim)
        .max_by_key(|s| terms(s).iter().filter(|t| related(t)).count())
        .filter(|s| terms(s).iter().any(related))?;
    Some((contact, format!("Can you confirm this? {sentence}?")))
}

/// What the node's note says the other contact said.
fn relayed(note: &str) -> Option<String> {
    let (_, said) = note.split_once(" said: ")?;
    let said = said.trim_end_matches(']').trim();
    let said = said.split(" / ").next().unwrap_or(said).trim().trim_end_matches('.');
    (!said.is_empty() && said != "nothing").then(|| format!("{said}."))
}

fn with_prefix(reply: BrainReply, prefix: &str) -> BrainReply {
    match reply {
        BrainReply::Say(text) => BrainReply::Say(format!("{prefix}{text}")),
        BrainReply::Call { text, calls } => BrainReply::Call { text: format!("{prefix}{text}"), calls },
    }
}

/// The calls to make before answering.
fn first_step(mode: Mode, question: &str, offered: &dyn Fn(&str) -> bool) -> BrainReply {
    let lower = question.to_lowercase();
    let calls = match mode {
        Mode::Counterpart => vec![
            call(MEMORY_RECALL, json!({ "query": "", "layer": "value", "limit": 20 })),
            call(MEMORY_RECALL, json!({ "query": question, "layer": "factual", "limit": 3 })),
            call(MEMORY_RECALL, json!({ "query": "", "layer": "pattern", "limit": 20 })),
        ],
        Mode::Manager => {
            if terms(&advice_topic(question)).is_empty() {
                return BrainReply::Say(
                    "I am your manager agent. Ask me about anything your identities know; I advise, and I never \
                     talk to anyone outside this node."
                        .into(),
                );
            }
            vec![call(MEMORY_RECALL, json!({ "query": advice_topic(question), "limit": 8 }))]
        }
        Mode::Owner => {
            if let Some(fact) = remember_what(question) {
                let layer = if is_pattern(&fact) { "pattern" } else { "factual" };
                vec![call(MEMORY_STORE, json!({ "layer": layer, "text": fact }))]
            } else if let Some((contact, purpose)) =
                collaboration_with(question).filter(|_| offered(REQUEST_COLLABORATION))
            {
                vec![call(REQUEST_COLLABORATION, json!({ "contact": contact, "purpose": purpose }))]
            } else if lower.contains("manager") && offered(CONSULT_MANAGER) {
                vec![call(CONSULT_MANAGER, json!({ "question": question }))]
            } else if terms(question).iter().all(|term| GREETINGS.contains(&term.as_str())) {
                return BrainReply::Say(
                    "Hello. Ask me what I know, tell me to remember something (\"remember that ...\"), ask me to \
                     work with one of your contacts (\"work with NAME on ...\"), or ask the manager for advice."
                        .into(),
                );
            } else {
                vec![call(MEMORY_RECALL, json!({ "query": question, "limit": 5 }))]
            }
        }
    };
    BrainReply::Call { text: String::new(), calls }
}

fn answer_owner(conversation: &[Message], question: &str, done: &[Done]) -> BrainReply {
    let Some(first) = done.first() else { return BrainReply::Say("I have nothing to add.".into()) };
    if let Some(error) = first.result.get("error").and_then(Value::as_str) {
        return BrainReply::Say(format!("I could not do that: {error}"));
    }
    let text = match first.name.as_str() {
        MEMORY_STORE => format!(
            "Noted in my {} memory (entry {}): {}",
            first.result["layer"].as_str().unwrap_or("factual"),
            first.result["stored"],
            first.arguments["text"].as_str().unwrap_or_default()
        ),
        REQUEST_COLLABORATION => format!(
            "I asked for your approval (id {}) to work with {} on: {}. Nothing is sent until you approve.",
            first.result["approval"].as_str().map_or("?", |id| &id[..id.len().min(8)]),
            first.arguments["contact"].as_str().unwrap_or_default(),
            first.arguments["purpose"].as_str().unwrap_or_default()
        ),
        CONSULT_MANAGER => format!("The manager advises: {}", first.result["advice"].as_str().unwrap_or_default()),
        _ => {
            let entries = entries(&first.result);
            if entries.is_empty() {
                format!(
                    "I don't know: nothing in my {} memory matches \"{question}\", and I won't guess. Tell me with \
                     \"remember that ...\" or `clawnet memory add`.",
                    own_tag(conversation)
                )
            } else {
                let lines: Vec<String> = entries.iter().map(|e| format!("- {}", describe_entry(e, false))).collect();
                format!("Here is what I know:\n{}", lines.join("\n"))
            }
        }
    };
    BrainReply::Say(text)
}

fn answer_manager(question: &str, done: &[Done]) -> BrainReply {
    let entries: Vec<&Value> = done.iter().flat_map(|d| entries(&d.result)).collect();
    if entries.is_empty() {
        return BrainReply::Say(format!(
            "None of your identities' memories holds anything about \"{}\"; I have no advice I could stand behind.",
            advice_topic(question)
        ));
    }
    let lines: Vec<String> = entries.iter().map(|e| format!("- {}", describe_entry(e, true))).collect();
    BrainReply::Say(format!("From your identities' memory:\n{}", lines.join("\n")))
}

fn answer_counterpart(history: &[Message], question: &str, done: &[Done]) -> BrainReply {
    let values: Vec<&Value> =
        done.iter().filter(|d| d.arguments["layer"] == "value").flat_map(|d| entries(&d.result)).collect();
    let facts: Vec<&Value> =
        done.iter().filter(|d| d.arguments["layer"] == "factual").flat_map(|d| entries(&d.result)).collect();
    let bounds: Vec<Bound> = values
        .iter()
        .filter_map(|e| serde_json::from_value::<BoundView>(e.get("bound")?.clone()).ok()?.bound())
        .collect();
    let question_terms = terms(question);
    let bound =
        bounds.iter().max_by_key(|b| terms(&b.subject).iter().filter(|t| question_terms.contains(t)).count()).cloned();
    match bound {
        Some(bound) => {
            // Volunteer a fact only if it is plainly about what they said, and never one that
            // names an amount in the negotiated unit (a budget would give our limit away).
            let unit_terms = terms(&bound.unit);
            let topical = |term: &String| !unit_terms.contains(term) && !term.chars().all(|c| c.is_ascii_digit());
            let context = facts.iter().filter_map(|fact| fact["text"].as_str()).find(|fact| {
                let shared = terms(fact).into_iter().filter(|t| topical(t) && question_terms.contains(t)).count();
                shared >= 2 && find_offer(fact, &bound.unit).is_none()
            });
            negotiate(history, question, &bound, context)
        }
        None if !facts.is_empty() => {
            let lines: Vec<&str> = facts.iter().filter_map(|e| e["text"].as_str()).collect();
            BrainReply::Say(lines.join(" "))
        }
        None => end(
            "I don't have that information, and I won't guess: my owner will need to answer it.".into(),
            EndMarker::NeedsOwner,
        ),
    }
}

/// One negotiation move within `bound`; our first move starts with `context` (the fact most
/// relevant to the counterpart's message), if any.
fn negotiate(history: &[Message], question: &str, bound: &Bound, context: Option<&str>) -> BrainReply {
    let ours: Vec<Amount> = history
        .iter()
        .filter(|m| m.role == Role::Assistant && m.tool_calls.is_empty() && !m.content.is_empty())
        .filter_map(|m| find_offer(&m.content, &bound.unit))
        .collect();
    let round = ours.len().min(CONCESSIONS.len() - 1);
    let next = offer_at(bound, CONCESSIONS[round]);
    let final_offer = round == CONCESSIONS.len() - 1;
    let price = |amount: Amount| with_unit(amount, &bound.unit);
    let prefix = match context {
        Some(fact) if ours.is_empty() => format!("{}. ", fact.trim_end_matches('.')),
        _ => String::new(),
    };
    let say = |text: String| BrainReply::Say(format!("{prefix}{text}"));
    let agreed =
        |amount: Amount| end(format!("Agreed: a {} of {}.", bound.subject, price(amount)), EndMarker::Resolved);
    let Some(theirs) = find_offer(question, &bound.unit) else {
        return say(match ours.last() {
            None => format!("We propose a {} of {}.", bound.subject, price(next)),
            Some(last) => format!("Our offer stands at {}.", price(*last)),
        });
    };
    if bound.accepts(theirs) {
        if !bound.prefers(next, theirs) {
            return agreed(theirs);
        }
        let middle = round_toward(bound, Amount((theirs.0 + next.0) / 2));
        if middle == theirs || ours.last() == Some(&middle) {
            return agreed(theirs);
        }
        return say(format!("We are close. Let us meet in the middle at {}.", price(middle)));
    }
    let too = match bound.direction {
        Direction::AtMost => "too high",
        Direction::AtLeast => "too low",
    };
    if ours.last() == Some(&bound.limit) {
        return end(
            format!(
                "{} was our final offer for the {}; we cannot go further, so we have to leave it here.",
                price(bound.limit),
                bound.subject
            ),
            EndMarker::Deadlock,
        );
    }
    if final_offer || next == bound.limit {
        return say(format!("{} is {too} for us. Our final offer is {}.", price(theirs), price(bound.limit)));
    }
    say(format!("{} is {too} for us. We can offer {}.", price(theirs), price(next)))
}

/// The offer `percent` of the way from target to limit, rounded to 0.10 on our side (the limit
/// itself is never rounded).
fn offer_at(bound: &Bound, percent: i64) -> Amount {
    if percent >= 100 {
        return bound.limit;
    }
    let exact = Amount(bound.target.0 + (bound.limit.0 - bound.target.0) * percent / 100);
    round_toward(bound, exact)
}

/// `amount` rounded to 0.10, toward our good side.
fn round_toward(bound: &Bound, amount: Amount) -> Amount {
    let down = amount.0.div_euclid(10) * 10;
    let rounded = match bound.direction {
        Direction::AtMost => down,
        Direction::AtLeast if down == amount.0 => down,
        Direction::AtLeast => down + 10,
    };
    Amount(rounded)
}

fn with_unit(amount: Amount, unit: &str) -> String {
    if unit.is_empty() { amount.to_string() } else { format!("{amount} {unit}") }
}

fn end(text: String, marker: EndMarker) -> BrainReply {
    let outcome = match marker {
        EndMarker::Resolved => "resolved",
        EndMarker::Deadlock => "deadlock",
        EndMarker::NeedsOwner => "need_owner",
    };
    BrainReply::Call { text, calls: vec![call(END_CONVERSATION, json!({ "outcome": outcome }))] }
}

fn call(name: &str, arguments: Value) -> ToolCall {
    ToolCall { id: String::new(), name: name.into(), arguments }
}

/// The calls made after the last user message, each with its result.
fn tool_results(messages: &[Message]) -> Vec<Done> {
    let calls: Vec<&ToolCall> = messages.iter().flat_map(|m| &m.tool_calls).collect();
    messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| {
            let call = calls.iter().find(|c| Some(&c.id) == m.tool_call_id.as_ref())?;
            Some(Done {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                result: serde_json::from_str(&m.content).unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn entries(result: &Value) -> Vec<&Value> {
    result.get("entries").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

fn describe_entry(entry: &Value, with_identity: bool) -> String {
    let text = entry["text"].as_str().unwrap_or_default();
    let kind = entry["kind"].as_str().unwrap_or_default();
    let prefix =
        if with_identity { format!("[{}] ", entry["identity"].as_str().unwrap_or("?")) } else { String::new() };
    match kind {
        "never-share" => format!("{prefix}{text} (never-share: it stays inside this node)"),
        "fact" | "" => format!("{prefix}{text}"),
        other => format!("{prefix}{text} ({other})"),
    }
}

/// The identity's tag, from the role prompt.
fn own_tag(conversation: &[Message]) -> String {
    conversation
        .iter()
        .find(|m| m.role == Role::System)
        .and_then(|m| m.content.split('"').nth(1))
        .unwrap_or("identity")
        .to_owned()
}

/// The topic of an identity's request for advice ("... asks for advice: TOPIC").
fn advice_topic(question: &str) -> String {
    question.split_once("asks for advice:").map_or(question, |(_, topic)| topic).trim().to_owned()
}

/// "remember that X" / "note: X" / "keep in mind X" → X.
fn remember_what(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    let lower = lower.trim_start_matches("please ").trim_start();
    let skip = message.len() - lower.len();
    for cue in ["remember that ", "remember ", "note that ", "note: ", "keep in mind that ", "keep in mind "] {
        if lower.starts_with(cue) {
            let rest = message[skip + cue.len()..].trim().trim_end_matches('.').trim();
            return (!rest.is_empty()).then(|| rest.to_owned());
        }
    }
    None
}

/// Whether a fact to remember is a habit or preference.
fn is_pattern(fact: &str) -> bool {
    let lower = fact.to_lowercase();
    ["prefer", "usually", "always", "likes", "dislikes", "habit", "tends to", "style"]
        .iter()
        .any(|cue| lower.contains(cue))
}

/// "work with NAME on PURPOSE" (and talk/negotiate/collaborate) → (NAME, PURPOSE).
fn collaboration_with(message: &str) -> Option<(String, String)> {
    let lower = message.to_lowercase();
    let start = ["work with ", "talk to ", "talk with ", "negotiate with ", "collaborate with ", "session with "]
        .iter()
        .filter_map(|cue| lower.find(cue).map(|at| at + cue.len()))
        .min()?;
    let rest = &message[start..];
    let rest_lower = &lower[start..];
    let split = [" about ", " on ", " regarding ", " to ", " for "]
        .iter()
        .filter_map(|cue| rest_lower.find(cue).map(|at| (at, cue.len())))
        .min();
    let (contact, purpose) = match split {
        Some((at, len)) => (&rest[..at], rest[at + len..].trim()),
        None => (rest, message.trim()),
    };
    let contact = contact.trim().trim_end_matches(['.', ',', '!', '?']).trim();
    let purpose = purpose.trim_end_matches(['.', '!', '?']).trim();
    (!contact.is_empty() && !purpose.is_empty()).then(|| (contact.to_owned(), purpose.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(direction: Direction, limit: i64, target: i64) -> Bound {
        Bound {
            subject: "unit price".into(),
            direction,
            limit: Amount::units(limit),
            target: Amount::units(target),
            unit: "EUR".into(),
        }
    }

    fn said(reply: &BrainReply) -> (&str, Option<&str>) {
        match reply {
            BrainReply::Say(text) => (text, None),
            BrainReply::Call { text, calls } => (text, calls[0].arguments["outcome"].as_str()),
        }
    }

    /// Two rule brains haggle until one ends the conversation.
    fn haggle(buyer: &Bound, seller: &Bound) -> (Vec<String>, Option<String>) {
        let mut lines: Vec<String> = Vec::new();
        for turn in 0..16_usize {
            let me = if turn % 2 == 0 { buyer } else { seller };
            // This side's view: its own lines as assistant, the other side's as user.
            let history: Vec<Message> = lines[..turn.saturating_sub(1)]
                .iter()
                .enumerate()
                .map(
                    |(i, line)| {
                        if i % 2 == turn % 2 { Message::assistant(line.clone()) } else { Message::user(line.clone()) }
                    },
                )
                .collect();
            let question = if turn == 0 { "Session opened: price for 500 units." } else { lines[turn - 1].as_str() };
            let reply = negotiate(&history, question, me, None);
            let (text, end) = said(&reply);
            lines.push(text.to_owned());
            if let Some(end) = end {
                return (lines, Some(end.to_owned()));
            }
        }
        (lines, None)
    }

    /// Every line's own offer (the last amount in it) is inside the speaker's bound.
    fn assert_offers_within_bounds(lines: &[String], buyer: &Bound, seller: &Bound) {
        for (i, line) in lines.iter().enumerate() {
            let offer = find_offer(line, "EUR").unwrap_or_else(|| panic!("no offer in {line:?}"));
            let side = if i % 2 == 0 { buyer } else { seller };
            assert!(side.accepts(offer), "{line:?} crosses the speaker's limit");
        }
    }

    #[test]
    fn overlapping_bounds_meet_inside_both() {
        let buyer = bound(Direction::AtMost, 42, 38);
        let seller = bound(Direction::AtLeast, 40, 46);
        let (lines, outcome) = haggle(&buyer, &seller);
        assert_eq!(outcome.as_deref(), Some("resolved"), "{lines:#?}");
        let last = lines.last().unwrap();
        let price = find_offer(last, "EUR").unwrap();
        assert!(last.starts_with("Agreed"), "{lines:#?}");
        assert!(buyer.accepts(price) && seller.accepts(price), "{price} in {lines:#?}");
        assert!(lines.len() >= 4, "a negotiation, not a capitulation: {lines:#?}");
        assert_offers_within_bounds(&lines, &buyer, &seller);
    }

    #[test]
    fn disjoint_bounds_end_in_deadlock_without_crossing_a_limit() {
        let buyer = bound(Direction::AtMost, 35, 30);
        let seller = bound(Direction::AtLeast, 40, 46);
        let (lines, outcome) = haggle(&buyer, &seller);
        assert_eq!(outcome.as_deref(), Some("deadlock"), "{lines:#?}");
        assert_offers_within_bounds(&lines, &buyer, &seller);
    }

    #[test]
    fn intents_are_recognized() {
        assert_eq!(
            remember_what("Please remember that the budget is 5000 EUR."),
            Some("the budget is 5000 EUR".into())
        );
        assert_eq!(remember_what("What is the budget?"), None);
        assert_eq!(
            collaboration_with("Work with Bob Ltd on the Q3 delivery plan"),
            Some(("Bob Ltd".into(), "the Q3 delivery plan".into()))
        );
        assert!(is_pattern("Carol prefers short emails"));
        assert_eq!(
            advice_topic("Your owner's \"work\" identity agent asks for advice: the Falcon date"),
            "the Falcon date"
        );
    }

    #[test]
    fn offers_step_toward_the_limit_and_never_cross_it() {
        let buyer = bound(Direction::AtMost, 42, 38);
        assert_eq!(offer_at(&buyer, 0), Amount(3800));
        assert_eq!(offer_at(&buyer, 40), Amount(3960));
        assert_eq!(offer_at(&buyer, 100), Amount(4200));
        let seller = bound(Direction::AtLeast, 40, 46);
        assert_eq!(offer_at(&seller, 40), Amount(4360));
        assert_eq!(round_toward(&seller, Amount(4001)), Amount(4010));
        assert_eq!(round_toward(&buyer, Amount(4009)), Amount(4000));
    }

    #[test]
    fn a_pattern_names_who_to_ask_about_what() {
        let question = "ACME needs 500 units delivered by 14 March. We propose 38.00 EUR.";
        let (contact, purpose) = ask_about("Ask Initech about delivery dates", question).unwrap();
        assert_eq!(contact, "Initech");
        assert_eq!(purpose, "Can you confirm this? ACME needs 500 units delivered by 14 March?");
        assert_eq!(ask_about("Ask Initech about delivery dates", "We propose 38.00 EUR."), None);
        assert_eq!(ask_about("prefers short answers", question), None);
    }

    #[test]
    fn session_openings_and_node_notes_are_read() {
        let opening = "The session with Initech is open.\nPurpose: When can you ship?\nYou speak first.";
        assert_eq!(opening_question(opening).as_deref(), Some("When can you ship?"));
        assert_eq!(opening_question("The session with X is open.\nPurpose: Price\nYou speak first."), None);
        let note = format!(
            "{NODE_NOTE} your session with Initech about \"x\" ended (resolved). Initech said: On 11 March. / Bye]"
        );
        assert_eq!(relayed(&note).as_deref(), Some("On 11 March."));
        assert_eq!(relayed(&format!("{NODE_NOTE} ... Initech said: nothing]")), None);
    }
}
