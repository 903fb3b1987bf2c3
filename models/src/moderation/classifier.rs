//! The moderator's second learned signal: a linear classifier over embeddings, trained on the
//! exemplars.
//!
//! Nearest neighbours ask "which labelled message is this most like?", and a message phrased
//! unlike every exemplar slips between them. A linear model asks instead which side of the
//! space it lies on: trained on all exemplars at once, it weighs the directions that separate
//! threats from "this song kills" and ignores the ones they share.
//!
//! ```text
//!  moderation_exemplar[_local] (this version, this model) ──train, once per model──> Classifier
//!  submission_embedding[_local] ──────────────────────────────────────> probabilities per label
//! ```
//!
//! - Softmax regression, one class per harmful [`Label`] plus two harmless ones (look-alikes,
//!   ordinary messages), trained by full-batch
//!   gradient descent from zero weights: deterministic, so the same exemplars give the same
//!   model on every instance, and a decision can be reproduced.
//! - Classes are weighted to count equally, however many exemplars each has.
//! - Trained in the process on first use (about a second in a release build), not shipped as
//!   weights: it follows whichever embedding model and exemplar version are in use.
//! - Like the neighbours, it only ever holds: it reads meaning, not intent.

use super::exemplars::Label;

/// Gradient descent steps over the whole exemplar set.
const EPOCHS: usize = 300;
/// Step size, for inputs scaled to unit variance per dimension.
const LEARNING_RATE: f32 = 0.5;
/// L2 penalty on the weights: keeps the model from memorising single exemplars.
const L2: f32 = 1e-3;

/// Probability of a harmful label at or above which the classifier raises it.
pub const MIN_PROBABILITY: f32 = 0.85;

/// A trained classifier for one embedding model's vectors.
#[derive(Debug, Clone)]
pub struct Classifier {
    dims: usize,
    /// Row `c` holds class `c`'s weights, then its bias.
    weights: Vec<f32>,
}

/// The classes, in the order of the model's rows: every harmful label, then the harmless
/// look-alikes, then ordinary messages. Two harmless classes, so that the many ordinary
/// messages do not outweigh the few look-alikes that sit right beside harm.
const CLASSES: usize = Label::ALL.len() + 2;
const LOOK_ALIKE: usize = Label::ALL.len();
const ORDINARY: usize = Label::ALL.len() + 1;

fn class_label(class: usize) -> Option<Label> {
    Label::ALL.get(class).copied()
}

fn class_of(label: Label, harmful: bool) -> usize {
    match Label::ALL.iter().position(|&x| x == label) {
        Some(i) if harmful => i,
        _ if label == Label::Ordinary => ORDINARY,
        _ => LOOK_ALIKE,
    }
}

impl Classifier {
    /// Trains on `examples`: each a vector, its label and whether it is harmful. All vectors
    /// must have the same length. `None` when there is nothing to learn from.
    pub fn train(examples: &[(Vec<f32>, Label, bool)]) -> Option<Classifier> {
        let dims = examples.first()?.0.len();
        if dims == 0 || examples.iter().any(|(v, _, _)| v.len() != dims) {
            return None;
        }
        let scale = (dims as f32).sqrt();
        let inputs: Vec<Vec<f32>> = examples
            .iter()
            .map(|(v, _, _)| v.iter().map(|x| x * scale).collect())
            .collect();
        let classes: Vec<usize> = examples
            .iter()
            .map(|&(_, label, harmful)| class_of(label, harmful))
            .collect();
        let mut counts = [0usize; CLASSES];
        classes.iter().for_each(|&c| counts[c] += 1);
        let present = counts.iter().filter(|&&n| n > 0).count() as f32;
        let class_weight: Vec<f32> = counts
            .iter()
            .map(|&n| {
                if n == 0 {
                    0.0
                } else {
                    examples.len() as f32 / (present * n as f32)
                }
            })
            .collect();

        let row = dims + 1;
        let mut model = Classifier {
            dims,
            weights: vec![0.0; CLASSES * row],
        };
        let mut gradient = vec![0.0f32; CLASSES * row];
        let n = examples.len() as f32;
        for _ in 0..EPOCHS {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            for (x, &class) in inputs.iter().zip(&classes) {
                let p = model.softmax_scaled(x);
                let w = class_weight[class];
                for (c, pc) in p.iter().enumerate() {
                    let err = w * (pc - if c == class { 1.0 } else { 0.0 });
                    let g = &mut gradient[c * row..(c + 1) * row];
                    for (gi, xi) in g.iter_mut().zip(x) {
                        *gi += err * xi;
                    }
                    g[dims] += err;
                }
            }
            for (i, (w, g)) in model.weights.iter_mut().zip(&gradient).enumerate() {
                let penalty = if i % row == dims { 0.0 } else { L2 * *w };
                *w -= LEARNING_RATE * (g / n + penalty);
            }
        }
        Some(model)
    }

    /// The probability of each harmful label for `vector` (an embedding from the model this
    /// classifier was trained for); empty when its length differs.
    pub fn probabilities(&self, vector: &[f32]) -> Vec<(Label, f32)> {
        if vector.len() != self.dims {
            return Vec::new();
        }
        let scale = (self.dims as f32).sqrt();
        let x: Vec<f32> = vector.iter().map(|v| v * scale).collect();
        self.softmax_scaled(&x)
            .into_iter()
            .enumerate()
            .filter_map(|(c, p)| Some((class_label(c)?, p)))
            .collect()
    }

    /// The categories it raises for `vector`: for each label at or above
    /// [`MIN_PROBABILITY`], that label's [`Label::holds`].
    pub fn score(&self, vector: &[f32]) -> Vec<(&'static str, f64)> {
        self.probabilities(vector)
            .into_iter()
            .filter(|&(_, p)| p >= MIN_PROBABILITY)
            .flat_map(|(label, _)| label.holds().iter().copied())
            .collect()
    }

    fn softmax_scaled(&self, x: &[f32]) -> [f32; CLASSES] {
        let row = self.dims + 1;
        let mut logits = [0.0f32; CLASSES];
        for (c, logit) in logits.iter_mut().enumerate() {
            let w = &self.weights[c * row..(c + 1) * row];
            *logit = w[self.dims] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for l in &mut logits {
            *l = (*l - max).exp();
            sum += *l;
        }
        logits.map(|l| l / sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors around a direction, a little apart.
    fn around(direction: usize, dims: usize, count: usize) -> Vec<Vec<f32>> {
        (0..count)
            .map(|i| {
                let mut v = vec![0.0; dims];
                v[direction] = 1.0;
                v[(direction + 1 + i) % dims] = 0.3;
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    #[test]
    fn it_learns_which_side_of_the_space_a_label_lies_on() {
        let dims = 16;
        let mut examples: Vec<(Vec<f32>, Label, bool)> = Vec::new();
        let labelled = |vectors: Vec<Vec<f32>>, label, harmful| {
            vectors.into_iter().map(move |v| (v, label, harmful))
        };
        examples.extend(labelled(around(0, dims, 5), Label::Threat, true));
        examples.extend(labelled(around(4, dims, 5), Label::Threat, false));
        examples.extend(labelled(around(8, dims, 20), Label::Ordinary, false));
        let model = Classifier::train(&examples).unwrap();
        let mut threat = vec![0.0; dims];
        threat[0] = 0.9;
        threat[7] = 0.4;
        let p = model.probabilities(&threat);
        let p_threat = p.iter().find(|(l, _)| *l == Label::Threat).unwrap().1;
        assert!(p_threat > 0.8, "{p:?}");
        assert!(
            model
                .score(&threat)
                .contains(&("harassment/threatening", 0.5))
        );
        let mut harmless = vec![0.0; dims];
        harmless[8] = 1.0;
        assert_eq!(model.score(&harmless), []);
    }

    #[test]
    fn nothing_to_learn_from_gives_no_model_and_a_wrong_length_no_scores() {
        assert!(Classifier::train(&[]).is_none());
        let harmless = |v: Vec<f32>| (v, Label::Ordinary, false);
        assert!(Classifier::train(&[harmless(vec![1.0]), harmless(vec![1.0, 0.0])]).is_none());
        let model = Classifier::train(&[harmless(vec![1.0, 0.0])]).unwrap();
        assert_eq!(model.probabilities(&[1.0]), []);
    }
}
