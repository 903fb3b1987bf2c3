//! The hour schedule: for each hour of the day, blocks in order (OP, NEWS, QANDA, MUSIC,
//! TOPIC, JINGLE) with their minutes, prompt and rotating topics, read from the database.
//! Blocks fill the hour in order; an hour whose blocks are shorter than 60 minutes ends
//! with music, and blocks that would run past the hour are cut at it.

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Block {
    Op,
    News,
    Qanda,
    Music,
    Topic,
    Jingle,
}

impl Block {
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Op => "OP",
            Block::News => "NEWS",
            Block::Qanda => "QANDA",
            Block::Music => "MUSIC",
            Block::Topic => "TOPIC",
            Block::Jingle => "JINGLE",
        }
    }

    pub fn parse(s: &str) -> Option<Block> {
        [
            Block::Op,
            Block::News,
            Block::Qanda,
            Block::Music,
            Block::Topic,
            Block::Jingle,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub block: Block,
    pub minutes: u32,
    pub prompt: String,
    pub topics: Vec<String>,
}

/// The block on air at some moment, with its bounds in the channel's local time.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub block: Block,
    pub prompt: String,
    /// This hour's topic for a TOPIC block (topics rotate hour by hour).
    pub topic: Option<String>,
    pub starts: NaiveDateTime,
    pub ends: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    hours: Vec<Vec<Entry>>,
}

impl Schedule {
    pub fn new(hours: Vec<Vec<Entry>>) -> Self {
        assert_eq!(hours.len(), 24, "a schedule has 24 hours");
        Schedule { hours }
    }

    pub async fn load(pool: &PgPool, channel: &str) -> Result<Schedule, sqlx::Error> {
        let rows = sqlx::query!(
            "SELECT hour, block, minutes, prompt, topics FROM schedule \
             WHERE channel_id = $1 ORDER BY hour, position",
            channel,
        )
        .fetch_all(pool)
        .await?;
        let mut hours = vec![Vec::new(); 24];
        for row in rows {
            // The table's CHECK constraints guarantee both.
            let (Some(block), Ok(hour)) = (Block::parse(&row.block), usize::try_from(row.hour))
            else {
                continue;
            };
            hours[hour % 24].push(Entry {
                block,
                minutes: row.minutes.max(1) as u32,
                prompt: row.prompt,
                topics: row.topics,
            });
        }
        Ok(Schedule { hours })
    }

    /// The block on air at `local` (the channel's wall-clock time).
    pub fn slot_at(&self, local: NaiveDateTime) -> Slot {
        let hour_start = local
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(local);
        let minute = local.minute();
        let mut start = 0u32;
        for entry in &self.hours[local.hour() as usize] {
            let end = (start + entry.minutes).min(60);
            if minute < end {
                let topic = (!entry.topics.is_empty()).then(|| {
                    // Rotates hour by hour through the list, day after day.
                    let n = local.ordinal() as usize * 24 + local.hour() as usize;
                    entry.topics[n % entry.topics.len()].clone()
                });
                return Slot {
                    block: entry.block,
                    prompt: entry.prompt.clone(),
                    topic,
                    starts: hour_start + chrono::Duration::minutes(i64::from(start)),
                    ends: hour_start + chrono::Duration::minutes(i64::from(end)),
                };
            }
            start = end;
        }
        Slot {
            block: Block::Music,
            prompt: String::new(),
            topic: None,
            starts: hour_start + chrono::Duration::minutes(i64::from(start)),
            ends: hour_start + chrono::Duration::hours(1),
        }
    }
}

/// The channel's local time at `at`, by its IANA time zone (Postgres knows them all).
pub async fn local_time(
    pool: &PgPool,
    channel: &str,
    at: DateTime<Utc>,
) -> Result<NaiveDateTime, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT ($1::timestamptz AT TIME ZONE timezone) AS "local!" FROM channel WHERE id = $2"#,
        at,
        channel,
    )
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
            .unwrap()
            .and_hms_opt(h, m, 30)
            .unwrap()
    }

    fn entry(block: Block, minutes: u32, topics: &[&str]) -> Entry {
        Entry {
            block,
            minutes,
            prompt: format!("{block} prompt"),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn blocks_follow_each_other_and_short_hours_end_with_music() {
        let mut hours = vec![vec![entry(Block::Op, 2, &[]), entry(Block::Qanda, 15, &[])]; 24];
        hours[7] = vec![
            entry(Block::Topic, 50, &["cities", "food"]),
            entry(Block::Jingle, 30, &[]),
        ];
        let s = Schedule::new(hours);
        assert_eq!(s.slot_at(at(3, 0)).block, Block::Op);
        let q = s.slot_at(at(3, 2));
        assert_eq!(
            (q.block, q.starts, q.ends),
            (
                Block::Qanda,
                at(3, 2) - chrono::Duration::seconds(30),
                at(3, 17) - chrono::Duration::seconds(30)
            )
        );
        assert_eq!(s.slot_at(at(3, 17)).block, Block::Music);
        assert_eq!(
            s.slot_at(at(3, 59)).ends,
            at(4, 0) - chrono::Duration::seconds(30)
        );
        // Cut at the hour.
        let j = s.slot_at(at(7, 55));
        assert_eq!((j.block, j.ends.hour()), (Block::Jingle, 8));
        // Topics rotate from hour to hour.
        let t7 = s.slot_at(at(7, 10)).topic.unwrap();
        let mut other = s.hours.clone();
        other[8] = other[7].clone();
        let t8 = Schedule::new(other).slot_at(at(8, 10)).topic.unwrap();
        assert_ne!(t7, t8);
    }
}
