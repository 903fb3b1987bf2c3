//! One push delivery of `submission-embedded`: moderate the words (the text, or an audio
//! submission's transcript), decide with the policy's per-category thresholds, and record
//! the decision (`embedded -> approved | held | rejected`), publishing `submission-ready`
//! for an approval. Redeliveries find the transition done and change nothing.

use axum::extract::State;
use models::moderation::LocalModerator;
use shared::message::{Event, SubmissionEvent};
use shared::pipeline;
use shared::push::{PushDelivery, PushOutcome};
use shared::submission::{Status, Transition};

use crate::decision::{self, DecisionRecord};
use crate::state::AppState;

pub async fn push(
    State(state): State<AppState>,
    PushDelivery(delivery): PushDelivery,
) -> PushOutcome {
    let deadline = state.config.stage.deadline;
    pipeline::deliver(
        delivery,
        Event::Embedded,
        deadline,
        move |event| async move { moderate(&state, event).await },
    )
    .await
}

async fn moderate(state: &AppState, event: SubmissionEvent) -> PushOutcome {
    let id = event.submission_id;
    let sub = match pipeline::load_expecting(&state.stage.pool, id, Status::Embedded).await {
        Ok(sub) => sub,
        Err(outcome) => return outcome,
    };
    let Some(words) = sub.words() else {
        return pipeline::fail(
            &state.stage.pool,
            id,
            Status::Embedded,
            "nothing to moderate",
        )
        .await;
    };
    let mut result = match state.moderator.moderate(words, Some(id)).await {
        Ok(result) => result,
        Err(e) if e.is_transient() => return PushOutcome::Retry(e.to_string()),
        Err(e) => {
            return pipeline::fail(&state.stage.pool, id, Status::Embedded, &e.to_string()).await;
        }
    };
    // Whichever provider moderates, the station's own checks apply: contact details and
    // instructions to the DJ are for a person.
    for (category, score) in LocalModerator::new().station_checks(words) {
        result.raise(&category, score);
    }
    let (decision, triggered) = state.config.policy.decide(&result);
    let record = DecisionRecord {
        decision,
        decided_by: state.moderator.name().to_owned(),
        flagged: result.flagged,
        categories: serde_json::to_value(&result.categories).expect("maps serialise"),
        scores: serde_json::to_value(&result.category_scores).expect("maps serialise"),
        triggered,
        note: None,
    };
    match decision::apply(
        state,
        id,
        Status::Embedded,
        &record,
        event.follow_up(Event::Ready, &sub),
    )
    .await
    {
        Ok(Transition::Applied) => PushOutcome::Done,
        Ok(Transition::NotApplicable) => PushOutcome::AlreadyDone,
        Err(e) => PushOutcome::Retry(format!("database: {e}")),
    }
}
