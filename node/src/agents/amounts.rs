//! Reading amounts out of text: bottom lines the owner types, offers in a counterpart's message.

use clawnet_storage::memory::Amount;

/// Parses "42", "42.5", "4,200.00", "4 200", "1.5k" or "€42" into hundredths. Rejects anything
/// else, including more than two decimals (an amount must not silently round).
pub fn parse_amount(text: &str) -> Option<Amount> {
    let text = text.trim().trim_start_matches(['€', '$', '£']).trim();
    let (text, scale) = match text.strip_suffix(['k', 'K']) {
        Some(rest) => (rest, 1000),
        None => (text, 1),
    };
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits: String = text.chars().filter(|c| !matches!(c, ',' | ' ' | '_')).collect();
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (digits.as_str(), ""),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 2 {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse().ok()? };
    let hundredths = whole.checked_mul(100)?.checked_add(fraction)?.checked_mul(scale)?;
    Some(Amount(if negative { -hundredths } else { hundredths }))
}

/// The amount in `message` that is most likely an offer in `unit`: numbers next to the unit
/// (or a currency sign) first, then numbers after "at", "for", "to"..., the last of equals.
/// Numbers that count things or name a day ("500 units", "3 days", "14 March") are skipped, and
/// with a unit to look for, a bare number is not taken for an offer.
pub fn find_offer(message: &str, unit: &str) -> Option<Amount> {
    let unit = unit.to_lowercase();
    let tokens: Vec<String> = message
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '!' | '?' | '(' | ')' | '"')).to_owned())
        .collect();
    let mut best: Option<(u8, usize, Amount)> = None;
    for (index, token) in tokens.iter().enumerate() {
        let token = token.trim_end_matches('.');
        let currency_sign = token.starts_with(['€', '$', '£']);
        let (number, glued_unit) = split_unit(token);
        let Some(amount) = parse_amount(number) else { continue };
        let word_at = |i: usize| tokens.get(i).map(|t| t.trim_end_matches('.').to_lowercase()).unwrap_or_default();
        let (next, after_next) = (word_at(index + 1), word_at(index + 2));
        let previous = index.checked_sub(1).map(|i| tokens[i].to_lowercase()).unwrap_or_default();
        // "500 units", "500 sensor units", "14 March"
        if COUNTED.iter().any(|word| next.starts_with(word) || after_next.starts_with(word)) {
            continue;
        }
        let names_unit = |word: &str| !unit.is_empty() && (word == unit || word.trim_end_matches('/') == unit);
        let score = if currency_sign || names_unit(&next) || names_unit(&glued_unit.to_lowercase()) {
            3
        } else if ["at", "for", "of", "to", "about", "price", "is"].contains(&previous.as_str()) {
            2
        } else {
            1
        };
        if best.is_none_or(|(s, _, _)| score >= s) {
            best = Some((score, index, amount));
        }
    }
    // With a unit to look for, a number with no context is too weak a guess ("500 sensors").
    let weakest = if unit.is_empty() { 1 } else { 2 };
    best.filter(|(score, _, _)| *score >= weakest).map(|(_, _, amount)| amount)
}

/// Words after a number that make it a count or a date, not a price.
const COUNTED: &[&str] = &[
    "unit", "piece", "item", "day", "week", "month", "year", "hour", "people", "pcs", "jan", "feb", "mar", "apr",
    "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// "42eur" → ("42", "eur"); "42.50" → ("42.50", "").
fn split_unit(token: &str) -> (&str, &str) {
    let end = token
        .char_indices()
        .find(|(_, c)| c.is_alphabetic() && !matches!(c, 'k' | 'K'))
        .map_or(token.len(), |(index, _)| index);
    (&token[..end], &token[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_or_not_at_all() {
        assert_eq!(parse_amount("42"), Some(Amount(4200)));
        assert_eq!(parse_amount("41.5"), Some(Amount(4150)));
        assert_eq!(parse_amount("4,200.05"), Some(Amount(420_005)));
        assert_eq!(parse_amount("€39.90"), Some(Amount(3990)));
        assert_eq!(parse_amount("1.5k"), Some(Amount(150_000)));
        assert_eq!(parse_amount("-3"), Some(Amount(-300)));
        for bad in ["", "abc", "4.205", "1.2.3", "12a", "."] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn offers_are_found_next_to_their_unit() {
        assert_eq!(
            find_offer("Globex can do 500 units at 41.50 EUR each, delivery in 7 days.", "EUR"),
            Some(Amount(4150))
        );
        assert_eq!(find_offer("How about €40?", "EUR"), Some(Amount(4000)));
        assert_eq!(find_offer("We could go to 39.", "EUR"), Some(Amount(3900)));
        assert_eq!(find_offer("500 units, 14 March", "EUR"), None, "counts and dates are not offers");
        assert_eq!(find_offer("What is your best price?", "EUR"), None);
        assert_eq!(find_offer("We need 500 sensors.", "EUR"), None);
        assert_eq!(find_offer("We need 500 sensors.", ""), Some(Amount(50000)));
        assert_eq!(find_offer("Price for 500 sensor units", "EUR"), None);
        assert_eq!(find_offer("42eur is our offer", "EUR"), Some(Amount(4200)));
    }
}
