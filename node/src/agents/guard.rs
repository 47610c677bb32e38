//! The disclosure guard: every message an identity agent is about to send outside the node is
//! checked against the owner's never-share items, outside the model, before it leaves.
//!
//! It checks the never-share items of *every* identity of the owner, not only the sender's: the
//! manager may pass one identity's knowledge to another in its advice, and a family secret must
//! not leave through the work identity either.
//!
//! Matching is on a folded form of the text, so the cheap disguises do not work: case, spacing
//! and punctuation ("F a l-c o n"), compatibility forms (full-width letters, ligatures),
//! accents, zero-width characters and Cyrillic/Greek look-alike letters. An item also matches
//! when every content word of it appears in the message in any order (a reordering
//! paraphrase). A false alarm costs the owner one approval; a miss leaks a secret, so the guard
//! errs on the side of holding. Paraphrase by synonyms is beyond a lexical check: that is what
//! the owner's approval of a held message, and the audit, are for.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::memory::terms;

/// Items shorter than this (folded) only match whole words, so "42" does not match "1420".
const MIN_INFIX_LEN: usize = 6;
/// Items need this many content words before word-set matching applies.
const MIN_WORDS_FOR_SET_MATCH: usize = 3;

/// One never-share item, prepared for matching.
#[derive(Debug, Clone)]
struct Secret {
    text: String,
    folded: String,
    words: Vec<String>,
}

/// What the guard decided about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing matched: it may be sent.
    Pass,
    /// It must be held for the owner: it matched these items.
    Hold {
        /// The never-share items it matched, as the owner wrote them.
        matched: Vec<String>,
    },
}

/// Checks outbound text against never-share items.
#[derive(Debug, Clone, Default)]
pub struct DisclosureGuard {
    secrets: Vec<Secret>,
}

impl DisclosureGuard {
    /// A guard for these never-share items.
    pub fn new<S: Into<String>>(items: impl IntoIterator<Item = S>) -> DisclosureGuard {
        let secrets = items
            .into_iter()
            .map(Into::into)
            .filter_map(|text: String| {
                let folded: String = words_of(&fold(&text)).concat();
                let mut words = terms(&fold(&text));
                words.sort();
                words.dedup();
                (!folded.is_empty()).then_some(Secret { text, folded, words })
            })
            .collect();
        DisclosureGuard { secrets }
    }

    /// How many items it guards.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it guards nothing.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `message` may leave the node.
    pub fn check(&self, message: &str) -> Verdict {
        if self.secrets.is_empty() {
            return Verdict::Pass;
        }
        let folded_message = fold(message);
        let words = words_of(&folded_message);
        let folded = words.concat();
        // Only items of several words need the message's terms.
        let message_terms = std::cell::OnceCell::new();
        let message_terms = || {
            message_terms.get_or_init(|| {
                let mut message_terms = terms(&folded_message);
                message_terms.sort();
                message_terms.dedup();
                message_terms
            })
        };
        let matched: Vec<String> = self
            .secrets
            .iter()
            .filter(|secret| {
                (secret.folded.len() >= MIN_INFIX_LEN && folded.contains(&secret.folded))
                    || joins_consecutive_words(&words, &secret.folded)
                    || (secret.words.len() >= MIN_WORDS_FOR_SET_MATCH
                        && secret.words.iter().all(|word| message_terms().binary_search(word).is_ok()))
            })
            .map(|secret| secret.text.clone())
            .collect();
        if matched.is_empty() { Verdict::Pass } else { Verdict::Hold { matched } }
    }
}

/// Whether some run of consecutive words of the message, glued together, spells `item`
/// ("fal con" spells "falcon"; "falconry" does not).
fn joins_consecutive_words(words: &[&str], item: &str) -> bool {
    (0..words.len()).any(|start| {
        let mut rest = item;
        for word in &words[start..] {
            match rest.strip_prefix(word) {
                Some("") => return true,
                Some(remaining) => rest = remaining,
                None => return false,
            }
        }
        false
    })
}

/// `text` with compatibility forms, accents, case and look-alike letters folded away.
fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).map(unconfuse).collect()
}

/// The words of folded text: runs of letters and digits; everything else separates.
fn words_of(folded: &str) -> Vec<&str> {
    folded.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).collect()
}

/// Maps Cyrillic and Greek letters that look like Latin ones to the Latin letter.
fn unconfuse(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ς' => 'c',
        'е' | 'ε' => 'e',
        'һ' => 'h',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'η' => 'n',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(guard: &DisclosureGuard, message: &str) -> bool {
        matches!(guard.check(message), Verdict::Hold { .. })
    }

    #[test]
    fn disguised_items_are_held() {
        let guard = DisclosureGuard::new(["Project Falcon", "Initech acquisition closes Friday"]);
        for message in [
            "Between us, project falcon is the real reason.",
            "It is called PROJECT-FALCON internally",
            "p r o j e c t   f a l c o n",
            "ProjectFalcon ships in May",
            "Ｐｒｏｊｅｃｔ Ｆａｌｃｏｎ", // full-width
            "Projеct Fаlcon",              // Cyrillic е and а
            "Proj\u{200b}ect Falcon",      // zero-width space
            "Prójéct Fâlcon",
            "On Friday the acquisition of Initech closes", // an item's words, reordered
        ] {
            assert!(held(&guard, message), "should hold: {message}");
        }
        assert_eq!(
            guard.check("project falcon: the Initech acquisition closes friday"),
            Verdict::Hold { matched: vec!["Project Falcon".into(), "Initech acquisition closes Friday".into()] }
        );
    }

    #[test]
    fn innocent_messages_pass() {
        let guard = DisclosureGuard::new(["Project Falcon", "42", "Initech acquisition plans"]);
        for message in [
            "We can deliver 500 units by 14 March.",
            "The falconry club meets on Sundays.",
            "Price: 1420 EUR",
            "Our project timeline is tight.",
            "We have acquisition plans, nothing to share yet.",
        ] {
            assert_eq!(guard.check(message), Verdict::Pass, "should pass: {message}");
        }
        assert!(held(&guard, "the answer is 4 2"), "short items match as whole words, spacing folded");
        assert!(DisclosureGuard::new(["  ", "--"]).is_empty(), "items with no letters or digits guard nothing");
    }
}
