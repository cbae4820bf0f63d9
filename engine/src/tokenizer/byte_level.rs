//! The byte-to-character map of byte-level BPE vocabularies (GPT-2, Llama 3, Qwen2): every
//! byte is written as one printable character, so `Ġ` in a token stands for a space.
//! Printable Latin-1 bytes stand for themselves; the others take the characters from
//! U+0100 upward, in byte order.

use std::collections::HashMap;

fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character each byte is written as.
pub fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in (0u8..=255).zip(out.iter_mut()) {
        *slot = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{fffd}');
            next += 1;
            c
        };
    }
    out
}

/// The inverse map: the byte a character stands for.
pub fn char_bytes() -> HashMap<char, u8> {
    byte_chars()
        .iter()
        .zip(0u8..=255)
        .map(|(c, b)| (*c, b))
        .collect()
}

/// The bytes a byte-level token stands for; `None` when a character is outside the map.
pub fn token_to_bytes(token: &str, map: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| map.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_a_bijection_with_the_known_space_character() {
        let chars = byte_chars();
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
        let inverse = char_bytes();
        assert_eq!(inverse.len(), 256);
        assert_eq!(token_to_bytes("Ġhello", &inverse).unwrap(), b" hello");
        assert_eq!(token_to_bytes("x\u{4e00}", &inverse), None);
    }
}
