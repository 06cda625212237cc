//! Token-level mutations of a stream: delete, duplicate, swap, insert, replace, truncate, copy a
//! run elsewhere, change a group's delimiter, or do one of these inside a group.

use proc_macro2::{Group, TokenStream, TokenTree};

use super::generate;
use super::rng::Rng;

/// `stream` mutated `times` times.
pub(super) fn mutate_times(stream: TokenStream, rng: &mut Rng, times: usize) -> TokenStream {
    (0..times).fold(stream, |stream, _| mutate(stream, rng, 0))
}

/// `stream` with one mutation, at its top level or inside one of its groups.
pub(super) fn mutate(stream: TokenStream, rng: &mut Rng, depth: usize) -> TokenStream {
    let mut tokens: Vec<TokenTree> = stream.into_iter().collect();
    let groups: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, token)| matches!(token, TokenTree::Group(_)))
        .map(|(index, _)| index)
        .collect();
    if !groups.is_empty() && depth < 6 && rng.chance(45) {
        let index = rng.pick(&groups);
        if let TokenTree::Group(group) = &tokens[index] {
            let inner = mutate(group.stream(), rng, depth + 1);
            let mut mutated = Group::new(group.delimiter(), inner);
            mutated.set_span(group.span());
            tokens[index] = TokenTree::Group(mutated);
        }
        return tokens.into_iter().collect();
    }
    let len = tokens.len();
    let at = rng.below(len + 1);
    match rng.below(9) {
        // Insert a random token.
        0 | 1 => {
            let inserted: Vec<TokenTree> = generate::token(rng, depth).into_iter().collect();
            tokens.splice(at..at, inserted);
        }
        _ if len == 0 => {}
        // Delete a token.
        2 | 3 => {
            tokens.remove(at.min(len - 1));
        }
        // Duplicate a token.
        4 => {
            let token = tokens[at.min(len - 1)].clone();
            tokens.insert(at.min(len - 1), token);
        }
        // Swap two tokens.
        5 => {
            let other = rng.below(len);
            tokens.swap(at.min(len - 1), other);
        }
        // Replace a token.
        6 => {
            let replacement: Vec<TokenTree> = generate::token(rng, depth).into_iter().collect();
            let at = at.min(len - 1);
            tokens.splice(at..=at, replacement);
        }
        // Truncate, or copy a run of tokens elsewhere.
        7 => {
            if rng.chance(30) {
                tokens.truncate(at);
            } else {
                let start = rng.below(len);
                let end = start + 1 + rng.below(len - start);
                let run: Vec<TokenTree> = tokens[start..end].to_vec();
                let to = rng.below(len + 1);
                tokens.splice(to..to, run);
            }
        }
        // Change a group's delimiter (or mutate a token where there is no group).
        _ => {
            if let Some(&index) = groups.first() {
                let index = if rng.chance(50) {
                    index
                } else {
                    rng.pick(&groups)
                };
                if let TokenTree::Group(group) = &tokens[index] {
                    let mut changed = Group::new(generate::delimiter(rng), group.stream());
                    changed.set_span(group.span());
                    tokens[index] = TokenTree::Group(changed);
                }
            } else {
                let replacement: Vec<TokenTree> = generate::token(rng, depth).into_iter().collect();
                let at = at.min(len - 1);
                tokens.splice(at..=at, replacement);
            }
        }
    }
    tokens.into_iter().collect()
}
