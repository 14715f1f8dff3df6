//! Monthly caps: what a user and a server may spend, checked before every model request
//! against what was billed this month, what requests in flight may still bill, and this
//! request's estimate. Requests in flight hold a reservation, so concurrent requests
//! cannot all pass on the same reading; one that ended while a reading was under way still
//! counts for it (its record may have landed after the reading).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDate};

use crate::config::ChatSettings;
use crate::conversations::GuildSettings;

/// Output tokens a request is assumed to bill before it is answered.
pub const ESTIMATED_OUTPUT_TOKENS: u64 = 1000;

/// The caps in force for one member in one place (None: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    pub user_usd: Option<f64>,
    pub server_usd: Option<f64>,
    pub user_tokens: Option<u64>,
}

fn lower(operator: Option<f64>, guild: Option<f64>) -> Option<f64> {
    match (operator, guild) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Caps {
    /// The operator's caps, lowered by the server's admins where they chose; outside a
    /// server there is no server cap.
    pub fn in_force(chat: &ChatSettings, guild: Option<&GuildSettings>) -> Caps {
        Caps {
            user_usd: lower(
                chat.user_monthly_budget_usd,
                guild.and_then(|g| g.user_budget_usd),
            ),
            server_usd: guild
                .and_then(|g| lower(chat.server_monthly_budget_usd, g.server_budget_usd)),
            user_tokens: chat.user_monthly_token_budget,
        }
    }

    pub fn any(&self) -> bool {
        self.user_usd.is_some() || self.server_usd.is_some() || self.user_tokens.is_some()
    }
}

/// What one request may bill: dollars when the model has a price, else tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amount {
    pub usd: f64,
    pub tokens: u64,
}

impl Amount {
    fn add(self, other: Amount) -> Amount {
        Amount {
            usd: self.usd + other.usd,
            tokens: self.tokens + other.tokens,
        }
    }
}

/// What one request is expected to bill, and which caps count it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    pub amount: Amount,
    /// The model has a price: dollar caps count it; else the token cap does.
    pub priced: bool,
}

/// What has been spent this month (billed plus reserved).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub user: Amount,
    pub server: Amount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    User,
    Server,
    UserTokens,
    /// A model without a price where only dollar caps are set: it cannot be counted.
    Unpriced,
}

/// A request refused at a cap.
#[derive(Debug, Clone, PartialEq)]
pub struct OverCap {
    pub cap: Cap,
    pub limit: f64,
    pub spent: f64,
    pub estimate: f64,
    pub resets: NaiveDate,
}

/// The first day of the month after `today`: when monthly caps start again.
pub fn reset_day(today: NaiveDate) -> NaiveDate {
    let (year, month) = if today.month() == 12 {
        (today.year() + 1, 1)
    } else {
        (today.year(), today.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(today)
}

pub fn dollars(amount: f64) -> String {
    if amount != 0.0 && amount.abs() < 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

impl OverCap {
    /// The one sentence the member gets: which cap, how much was spent, when it resets.
    pub fn sentence(&self) -> String {
        let resets = self.resets.format("%Y-%m-%d");
        match self.cap {
            Cap::User => format!(
                "💸 You have reached your monthly budget: {} of {} spent this month, and this request would need about {} more. It resets on {resets} (UTC); nothing was sent to the model.",
                dollars(self.spent),
                dollars(self.limit),
                dollars(self.estimate)
            ),
            Cap::Server => format!(
                "💸 This server has reached its monthly budget: {} of {} spent this month, and this request would need about {} more. It resets on {resets} (UTC); nothing was sent to the model.",
                dollars(self.spent),
                dollars(self.limit),
                dollars(self.estimate)
            ),
            Cap::Unpriced => "💸 This model has no price, and the budgets here are in dollars, so it cannot be used: an operator can price it in the model table or set USER_MONTHLY_TOKEN_BUDGET. Nothing was sent to the model.".to_string(),
            Cap::UserTokens => format!(
                "💸 You have reached your monthly token budget for unpriced models: {} of {} tokens used this month, and this request would need about {} more. It resets on {resets} (UTC); nothing was sent to the model.",
                self.spent as u64, self.limit as u64, self.estimate as u64
            ),
        }
    }
}

/// Pure: whether a request estimated at `estimate` fits. A priced request counts against
/// the dollar caps, an unpriced one (`priced` false) against the token cap.
pub fn check(
    caps: &Caps,
    spent: &Spent,
    estimate: Estimate,
    today: NaiveDate,
) -> Result<(), OverCap> {
    let Estimate {
        amount: estimate,
        priced,
    } = estimate;
    let over = |cap, limit: f64, spent: f64, estimate: f64| {
        (spent + estimate > limit).then(|| OverCap {
            cap,
            limit,
            spent,
            estimate,
            resets: reset_day(today),
        })
    };
    let refusal = if priced {
        caps.user_usd
            .and_then(|l| over(Cap::User, l, spent.user.usd, estimate.usd))
            .or_else(|| {
                caps.server_usd
                    .and_then(|l| over(Cap::Server, l, spent.server.usd, estimate.usd))
            })
    } else if let Some(limit) = caps.user_tokens {
        over(
            Cap::UserTokens,
            limit as f64,
            spent.user.tokens as f64,
            estimate.tokens as f64,
        )
    } else if caps.user_usd.is_some() || caps.server_usd.is_some() {
        Some(OverCap {
            cap: Cap::Unpriced,
            limit: 0.0,
            spent: 0.0,
            estimate: 0.0,
            resets: reset_day(today),
        })
    } else {
        None
    };
    refusal.map_or(Ok(()), Err)
}

/// Requests in flight by id: the scopes they count against and what they may bill.
type Held = HashMap<u64, (Vec<String>, Amount)>;

/// What requests in flight may still bill.
#[derive(Default)]
pub struct Reservations {
    held: Arc<Mutex<Held>>,
    next: AtomicU64,
}

/// The requests in flight when a reading of this month's usage began.
pub struct Snapshot(Held);

/// Held while a request is in flight; released when dropped (after the request's real
/// usage was recorded).
pub struct Reservation {
    held: Arc<Mutex<Held>>,
    id: u64,
}

fn lock(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reservations {
    /// Taken before this month's usage is read.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(lock(&self.held).clone())
    }

    /// Checks `estimate` against `billed` (read after `before`) plus every request in
    /// flight then or now, and reserves it when it fits: one step under one lock, so two
    /// requests cannot both take the last room.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &self,
        before: Snapshot,
        caps: &Caps,
        user_scope: &str,
        server_scope: Option<&str>,
        billed: Spent,
        estimate: Estimate,
        today: NaiveDate,
    ) -> Result<Reservation, OverCap> {
        let mut held = lock(&self.held);
        let mut counted = before.0;
        counted.extend(held.iter().map(|(id, r)| (*id, r.clone())));
        let reserved = |scope: &str| {
            counted
                .values()
                .filter(|(scopes, _)| scopes.iter().any(|s| s == scope))
                .fold(Amount::default(), |sum, (_, amount)| sum.add(*amount))
        };
        let spent = Spent {
            user: billed.user.add(reserved(user_scope)),
            server: billed
                .server
                .add(server_scope.map(reserved).unwrap_or_default()),
        };
        check(caps, &spent, estimate, today)?;
        let scopes: Vec<String> = std::iter::once(user_scope)
            .chain(server_scope)
            .map(str::to_string)
            .collect();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        held.insert(id, (scopes, estimate.amount));
        Ok(Reservation {
            held: self.held.clone(),
            id,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        lock(&self.held).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
    }

    fn usd(usd: f64) -> Amount {
        Amount { usd, tokens: 0 }
    }

    fn priced(usd: f64) -> Estimate {
        Estimate {
            amount: Amount { usd, tokens: 0 },
            priced: true,
        }
    }

    #[test]
    fn the_lower_of_operator_and_server_caps_holds() {
        let mut chat = ChatSettings::default();
        assert!(!Caps::in_force(&chat, None).any());
        chat.user_monthly_budget_usd = Some(5.0);
        chat.server_monthly_budget_usd = Some(50.0);
        let guild = GuildSettings {
            user_budget_usd: Some(2.0),
            server_budget_usd: Some(80.0),
            ..GuildSettings::default()
        };
        let caps = Caps::in_force(&chat, Some(&guild));
        assert_eq!(caps.user_usd, Some(2.0));
        assert_eq!(caps.server_usd, Some(50.0), "admins only lower");
        assert_eq!(
            Caps::in_force(&chat, None).server_usd,
            None,
            "no server in DMs"
        );
    }

    #[test]
    fn a_request_that_would_cross_a_cap_is_refused_with_when_it_resets() {
        let caps = Caps {
            user_usd: Some(1.0),
            server_usd: Some(3.0),
            user_tokens: Some(10_000),
        };
        let spent = Spent {
            user: Amount {
                usd: 0.9,
                tokens: 9_500,
            },
            server: usd(2.0),
        };
        assert!(check(&caps, &spent, priced(0.05), day()).is_ok());
        let over = check(&caps, &spent, priced(0.2), day()).unwrap_err();
        assert_eq!(over.cap, Cap::User);
        let sentence = over.sentence();
        assert!(sentence.contains("$0.90 of $1.00"), "{sentence}");
        assert!(sentence.contains("2027-01-01"), "{sentence}");
        let server_full = Spent {
            user: usd(0.0),
            server: usd(2.99),
        };
        let over = check(&caps, &server_full, priced(0.02), day()).unwrap_err();
        assert_eq!(over.cap, Cap::Server);
        assert!(over.sentence().contains("This server"));
        // Unpriced requests count tokens, not dollars.
        let tokens = Estimate {
            amount: Amount {
                usd: 0.0,
                tokens: 600,
            },
            priced: false,
        };
        assert_eq!(
            check(&caps, &spent, tokens, day()).unwrap_err().cap,
            Cap::UserTokens
        );
        assert_eq!(
            reset_day(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
    }

    #[test]
    fn concurrent_requests_cannot_all_take_the_last_room() {
        let reservations = Reservations::default();
        let caps = Caps {
            user_usd: Some(1.0),
            ..Caps::default()
        };
        let billed = Spent {
            user: usd(0.5),
            server: Amount::default(),
        };
        // Five requests of 0.2 on the same reading of 0.5 billed: two fit, not five.
        let admitted: Vec<_> = (0..5)
            .filter_map(|_| {
                let before = reservations.snapshot();
                reservations
                    .admit(before, &caps, "u", None, billed, priced(0.2), day())
                    .ok()
            })
            .collect();
        assert_eq!(admitted.len(), 2);
        // One ends while another's reading is under way, its record not yet read: it
        // still counts for that reading.
        let before = reservations.snapshot();
        drop(admitted);
        assert!(
            reservations
                .admit(before, &caps, "u", None, billed, priced(0.2), day())
                .is_err(),
            "a request that ended during the reading is not forgotten"
        );
        let before = reservations.snapshot();
        assert!(
            reservations
                .admit(before, &caps, "u", None, billed, priced(0.2), day())
                .is_ok(),
            "released when the requests ended"
        );
    }

    #[test]
    fn an_unpriced_model_under_dollar_caps_only_is_refused() {
        let caps = Caps {
            user_usd: Some(1.0),
            ..Caps::default()
        };
        let unpriced = Estimate {
            amount: Amount {
                usd: 0.0,
                tokens: 10,
            },
            priced: false,
        };
        let over = check(&caps, &Spent::default(), unpriced, day()).unwrap_err();
        assert_eq!(over.cap, Cap::Unpriced);
        assert!(over.sentence().contains("USER_MONTHLY_TOKEN_BUDGET"));
        assert!(check(&Caps::default(), &Spent::default(), unpriced, day()).is_ok());
    }
}
