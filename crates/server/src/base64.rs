//! Standard base64 (RFC 4648, with padding): HTTP Basic credentials and
//! the bytes of etcd's JSON gateway.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `input` encoded, with padding.
pub(crate) fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` decoded (padding optional), or `None` when it holds a character
/// outside the alphabet, ends in a lone character, or has more than
/// `max_chars` characters besides padding.
pub(crate) fn decode(s: &str, max_chars: usize) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        ALPHABET
            .iter()
            .position(|&x| x == c)
            .and_then(|i| u32::try_from(i).ok())
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    if bytes.len() > max_chars {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_standard_alphabet() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"/ocidb/head"), "L29jaWRiL2hlYWQ=");
        assert_eq!(
            decode("dXNlcjpwYXNz", 4096).as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(decode("YQ==", 4096).as_deref(), Some(&b"a"[..]));
        for n in 0..300usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            assert_eq!(decode(&encode(&bytes), 4096), Some(bytes));
        }
    }

    #[test]
    fn bad_input_and_long_input_are_refused() {
        assert_eq!(decode("!!", 4096), None);
        assert_eq!(decode("a*b", 4096), None);
        assert_eq!(decode("QUJD", 3), None);
        assert_eq!(decode("QUJDR", 4096), None, "a lone last character");
    }
}
