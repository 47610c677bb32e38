//! The built-in tools' descriptions for the brain (names, what they do, JSON Schema of their
//! arguments). They depend only on the kind of agent and its audience, a [`Shape`], so each
//! shape's list is built once and shared: built at every turn, the schemas were ~2% of a
//! session turn's CPU.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use super::{
    CONSULT_MANAGER, END_CONVERSATION, LIST_IDENTITIES, MAX_RECALL, MEMORY_RECALL, MEMORY_STORE, REQUEST_COLLABORATION,
};
use crate::agents::conversation::ToolSpec;

/// What the built-in tools depend on: the same shape always offers the same tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Manager,
    Identity { advisor: bool, audience: AudienceShape },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudienceShape {
    Owner,
    /// A counterpart in a session (the agent may open a child session from it).
    InSession,
    /// A counterpart outside any session.
    Counterpart,
}

impl Shape {
    const COUNT: usize = 7;

    fn index(self) -> usize {
        match self {
            Shape::Manager => 0,
            Shape::Identity { advisor, audience } => {
                1 + usize::from(advisor) * 3
                    + match audience {
                        AudienceShape::Owner => 0,
                        AudienceShape::InSession => 1,
                        AudienceShape::Counterpart => 2,
                    }
            }
        }
    }

    /// The built-in tools of this shape, built once.
    pub(super) fn builtin(self) -> Arc<[ToolSpec]> {
        static BUILT: [OnceLock<Arc<[ToolSpec]>>; Shape::COUNT] = [const { OnceLock::new() }; Shape::COUNT];
        BUILT[self.index()].get_or_init(|| self.build().into()).clone()
    }

    fn build(self) -> Vec<ToolSpec> {
        let mut specs = Vec::new();
        match self {
            Shape::Identity { advisor, audience } => {
                specs.push(spec(
                    MEMORY_RECALL,
                    "Recall entries of your own memory relevant to a query, best first. With an empty query \
                     and a layer, lists that layer. Layers: factual, pattern, value (never-share items, bottom \
                     lines with their limits, stance).",
                    json!({
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": "what to look for"},
                            "layer": {"type": "string", "enum": ["factual", "pattern", "value"]},
                            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RECALL}
                        },
                        "required": ["query"]
                    }),
                ));
                specs.push(spec(
                    MEMORY_STORE,
                    "Remember something for later: a fact (layer factual) or a habit, preference or style \
                     (layer pattern). Value memory is the owner's to write.",
                    json!({
                        "type": "object",
                        "properties": {
                            "layer": {"type": "string", "enum": ["factual", "pattern"]},
                            "text": {"type": "string"}
                        },
                        "required": ["layer", "text"]
                    }),
                ));
                if advisor {
                    specs.push(spec(
                        CONSULT_MANAGER,
                        "Ask your owner's private manager agent for advice. The advice comes back to you and \
                         is shown to your owner; it is never sent to anyone else.",
                        json!({
                            "type": "object",
                            "properties": {"question": {"type": "string"}},
                            "required": ["question"]
                        }),
                    ));
                }
                if audience != AudienceShape::Counterpart {
                    let description = if audience == AudienceShape::Owner {
                        "Ask your owner to approve a collaboration session with one of your contacts. Nothing \
                         is sent until the owner approves."
                    } else {
                        "You need another of your contacts to answer this counterpart: ask your owner to approve \
                         a session with them, opened from this one. Your turn here waits until it ends; what \
                         you then tell this counterpart is your choice, within your own scope."
                    };
                    specs.push(spec(
                        REQUEST_COLLABORATION,
                        description,
                        json!({
                            "type": "object",
                            "properties": {
                                "contact": {"type": "string", "description": "the contact's name or id"},
                                "purpose": {"type": "string"}
                            },
                            "required": ["contact", "purpose"]
                        }),
                    ));
                }
                if audience != AudienceShape::Owner {
                    specs.push(spec(
                        END_CONVERSATION,
                        "End this conversation with the counterpart: resolved (agreement reached), deadlock \
                         (no agreement possible within your limits) or need_owner (your owner must decide).",
                        json!({
                            "type": "object",
                            "properties": {
                                "outcome": {"type": "string", "enum": ["resolved", "deadlock", "need_owner"]},
                                "summary": {"type": "string"}
                            },
                            "required": ["outcome"]
                        }),
                    ));
                }
            }
            Shape::Manager => {
                specs.push(spec(
                    MEMORY_RECALL,
                    "Recall entries from the memory of any of your owner's identities, best first. Give \
                     `identity` to search one identity only. With an empty query and a layer, lists that layer.",
                    json!({
                        "type": "object",
                        "properties": {
                            "query": {"type": "string"},
                            "identity": {"type": "string", "description": "an identity's tag"},
                            "layer": {"type": "string", "enum": ["factual", "pattern", "value"]},
                            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RECALL}
                        },
                        "required": ["query"]
                    }),
                ));
                specs.push(spec(
                    LIST_IDENTITIES,
                    "List your owner's identities (their tags and what each is for).",
                    json!({"type": "object", "properties": {}}),
                ));
            }
        }
        specs
    }
}

/// A tool's description.
pub(crate) fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec { name: name.into(), description: description.into(), parameters }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(shape: Shape) -> Vec<String> {
        shape.builtin().iter().map(|spec| spec.name.clone()).collect()
    }

    #[test]
    fn each_shape_offers_its_own_built_in_tools() {
        use AudienceShape::{Counterpart, InSession, Owner};
        let identity = |advisor, audience| Shape::Identity { advisor, audience };
        assert_eq!(names(Shape::Manager), [MEMORY_RECALL, LIST_IDENTITIES]);
        assert_eq!(names(identity(true, Owner)), [MEMORY_RECALL, MEMORY_STORE, CONSULT_MANAGER, REQUEST_COLLABORATION]);
        assert_eq!(
            names(identity(true, InSession)),
            [MEMORY_RECALL, MEMORY_STORE, CONSULT_MANAGER, REQUEST_COLLABORATION, END_CONVERSATION]
        );
        assert_eq!(
            names(identity(true, Counterpart)),
            [MEMORY_RECALL, MEMORY_STORE, CONSULT_MANAGER, END_CONVERSATION]
        );
        assert_eq!(
            names(identity(false, InSession)),
            [MEMORY_RECALL, MEMORY_STORE, REQUEST_COLLABORATION, END_CONVERSATION]
        );
        // With the owner the agent asks for a session; in one, for a child session.
        let collaboration = |audience| {
            identity(false, audience)
                .builtin()
                .iter()
                .find(|spec| spec.name == REQUEST_COLLABORATION)
                .unwrap()
                .description
                .clone()
        };
        assert_ne!(collaboration(Owner), collaboration(InSession));
        // Every shape has its own slot.
        let all = [Shape::Manager].into_iter().chain(
            [false, true].into_iter().flat_map(|advisor| [Owner, InSession, Counterpart].map(|a| identity(advisor, a))),
        );
        let mut slots: Vec<usize> = all.map(Shape::index).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..Shape::COUNT).collect::<Vec<_>>());
    }
}
