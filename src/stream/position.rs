//! A client's place in a stream: the next offset of each partition, written `P:O,P:O`. It is
//! made of Kafka offsets alone, so a position from any replica resumes on any other.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most partitions a position names: a bound on what a client can make sluice parse.
const MOST_PARTITIONS: usize = 4096;

/// Parses `P:O[,P:O...]` into offsets by partition.
pub fn parse(text: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut offsets = BTreeMap::new();
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty position".to_owned());
    }
    for part in text.split(',') {
        let Some((partition, offset)) = part.trim().split_once(':') else {
            return Err(format!(
                "invalid position {text:?}: expected PARTITION:OFFSET[,...]"
            ));
        };
        let partition: i32 = partition
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| format!("invalid partition {partition:?} in position {text:?}"))?;
        let offset: i64 = offset
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| format!("invalid offset {offset:?} in position {text:?}"))?;
        if offsets.insert(partition, offset).is_some() {
            return Err(format!("partition {partition} is named twice in {text:?}"));
        }
        if offsets.len() > MOST_PARTITIONS {
            return Err("a position names too many partitions".to_owned());
        }
    }
    Ok(offsets)
}

/// Writes the next offsets of partitions `0..n` as a position.
pub fn format(next: &[i64]) -> String {
    let mut out = String::with_capacity(next.len() * 8);
    for (partition, offset) in next.iter().enumerate() {
        if partition > 0 {
            out.push(',');
        }
        let _ = write!(out, "{partition}:{offset}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_bad_ones_say_why() {
        assert_eq!(format(&[13, 0, 7]), "0:13,1:0,2:7");
        assert_eq!(
            parse("0:13,1:0, 2:7").unwrap(),
            BTreeMap::from([(0, 13), (1, 0), (2, 7)])
        );
        for (bad, why) in [
            ("", "empty"),
            ("0", "expected PARTITION:OFFSET"),
            ("x:1", "invalid partition"),
            ("0:-1", "invalid offset"),
            ("-1:0", "invalid partition"),
            ("0:1,0:2", "named twice"),
            ("0:99999999999999999999", "invalid offset"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_offsets_round_trip(next in proptest::collection::vec(0i64..i64::MAX, 1..64)) {
            let parsed = parse(&format(&next)).unwrap();
            let back: Vec<i64> = parsed.values().copied().collect();
            proptest::prop_assert_eq!(back, next);
        }

        #[test]
        fn any_text_is_parsed_or_refused(text in ".{0,64}") {
            let _ = parse(&text);
        }
    }
}
