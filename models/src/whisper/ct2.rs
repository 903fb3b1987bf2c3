//! Whisper weights in CTranslate2's `model.bin`, renamed and reshaped for candle's Whisper.
//!
//! The file (binary version 6, written by CTranslate2's `ModelSpec`): `u32` version,
//! spec name, `u32` revision, `u32` variable count, then per variable its name, `u8` rank,
//! rank `u32` dimensions, `u8` data type, `u32` byte count and the little-endian data;
//! then `u32` alias count and (alias, target) name pairs. Strings are a `u16` length that
//! counts a trailing NUL, then the bytes.
//!
//! CTranslate2 fuses projections that candle keeps apart: self-attention's Q, K and V are one
//! `linear_0` of 3·d rows, cross-attention's K and V one `linear_1` of 2·d rows. K's bias
//! (zeros from the converter) is dropped, which is exact in any case: a key bias adds the same
//! score to every key of a query, and softmax ignores that.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow, bail, ensure};
use candle_core::{Device, Tensor};
use candle_transformers::models::whisper::Config;

/// The only layout this reader knows.
const BINARY_VERSION: u32 = 6;
const SPEC_NAME: &str = "WhisperSpec";

/// CTranslate2's `DataType` codes.
const FLOAT32: u8 = 0;
const INT8: u8 = 1;
const INT16: u8 = 2;
const FLOAT16: u8 = 4;
const BFLOAT16: u8 = 5;

/// One stored variable, still in the file's bytes.
struct Variable<'a> {
    shape: Vec<usize>,
    dtype: u8,
    data: &'a [u8],
}

/// Parses `bytes` (the whole `model.bin`) into candle's variable names (`model.encoder...`)
/// with `f32` tensors, and the model's dimensions. `suppress_tokens` goes into the config
/// as given.
pub(super) fn load(
    bytes: &[u8],
    suppress_tokens: Vec<u32>,
) -> anyhow::Result<(HashMap<String, Tensor>, Config)> {
    let vars = parse(bytes)?;
    let config = config(&vars, suppress_tokens)?;
    let mut tensors = HashMap::new();
    for (name, var) in &vars {
        map_variable(name, var, &config, &mut tensors)
            .with_context(|| format!("variable {name}"))?;
    }
    Ok((tensors, config))
}

fn parse(bytes: &[u8]) -> anyhow::Result<HashMap<String, Variable<'_>>> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u32()?;
    ensure!(
        version == BINARY_VERSION,
        "CTranslate2 binary version {version}, expected {BINARY_VERSION}"
    );
    let spec = r.string()?;
    ensure!(
        spec == SPEC_NAME,
        "model spec {spec:?}, expected {SPEC_NAME:?}"
    );
    let _revision = r.u32()?;
    let count = r.u32()?;
    let mut vars = HashMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()?;
        let shape = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dtype = r.u8()?;
        let len = r.u32()? as usize;
        let data = r.take(len)?;
        let elements: usize = shape.iter().product();
        let width = match dtype {
            FLOAT32 => 4,
            FLOAT16 | BFLOAT16 | INT16 => 2,
            INT8 => 1,
            _ => 0,
        };
        ensure!(
            width == 0 || elements.checked_mul(width) == Some(len),
            "{name}: {len} bytes for shape {shape:?}"
        );
        vars.insert(name, Variable { shape, dtype, data });
    }
    // Aliases name shared weights (the output projection is the token embedding); candle's
    // Whisper ties those itself, so they are only read past.
    let aliases = r.u32()?;
    for _ in 0..aliases {
        r.string()?;
        r.string()?;
    }
    Ok(vars)
}

fn config(
    vars: &HashMap<String, Variable<'_>>,
    suppress_tokens: Vec<u32>,
) -> anyhow::Result<Config> {
    let shape = |name: &str| -> anyhow::Result<&[usize]> {
        vars.get(name)
            .map(|v| v.shape.as_slice())
            .ok_or_else(|| anyhow!("{name} is missing"))
    };
    let heads = |name: &str| -> anyhow::Result<usize> {
        let v = vars.get(name).ok_or_else(|| anyhow!("{name} is missing"))?;
        ensure!(
            v.dtype == INT16 && v.data.len() == 2,
            "{name} is not an int16 scalar"
        );
        Ok(usize::from(u16::from_le_bytes([v.data[0], v.data[1]])))
    };
    let layers = |prefix: &str| {
        (0..)
            .take_while(|i| vars.contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")))
            .count()
    };
    let conv1 = shape("encoder/conv1/weight")?;
    ensure!(conv1.len() == 3, "encoder/conv1/weight has shape {conv1:?}");
    let weight = vars
        .get("encoder/conv1/weight")
        .map(|v| v.dtype)
        .unwrap_or_default();
    ensure!(
        matches!(weight, FLOAT16 | FLOAT32 | BFLOAT16),
        "the weights are quantized (CTranslate2 type {weight}); only float16, bfloat16 and \
         float32 conversions are supported"
    );
    Ok(Config {
        num_mel_bins: conv1[1],
        d_model: conv1[0],
        max_source_positions: shape("encoder/position_encodings/encodings")?[0],
        encoder_attention_heads: heads("encoder/num_heads")?,
        encoder_layers: layers("encoder"),
        vocab_size: shape("decoder/embeddings/weight")?[0],
        max_target_positions: shape("decoder/position_encodings/encodings")?[0],
        decoder_attention_heads: heads("decoder/num_heads")?,
        decoder_layers: layers("decoder"),
        suppress_tokens,
    })
}

/// Stores `var` under its candle name(s); variables candle has no use for are skipped.
fn map_variable(
    name: &str,
    var: &Variable<'_>,
    config: &Config,
    out: &mut HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    let d = config.d_model;
    let (side, rest) = name.split_once('/').unwrap_or((name, ""));
    let prefix = match side {
        "encoder" | "decoder" => format!("model.{side}"),
        _ => return Ok(()),
    };
    let mut put = |candle: String, tensor: Tensor| {
        out.insert(format!("{prefix}.{candle}"), tensor);
    };

    // Whole-model variables.
    match rest {
        // candle computes the encoder's sinusoids itself; the decoder's are learned.
        "position_encodings/encodings" if side == "decoder" => {
            put("embed_positions.weight".into(), tensor(var)?);
            return Ok(());
        }
        "embeddings/weight" => {
            put("embed_tokens.weight".into(), tensor(var)?);
            return Ok(());
        }
        "conv1/weight" | "conv1/bias" | "conv2/weight" | "conv2/bias" => {
            put(rest.replace('/', "."), tensor(var)?);
            return Ok(());
        }
        "layer_norm/gamma" | "layer_norm/beta" => {
            put(format!("layer_norm.{}", param(rest)), tensor(var)?);
            return Ok(());
        }
        _ => {}
    }

    // Per-layer variables: `layer_N/<block>/<part>/<param>`.
    let Some((layer, block)) = rest.strip_prefix("layer_").and_then(|r| r.split_once('/')) else {
        return Ok(());
    };
    let layer: usize = layer.parse().context("layer number")?;
    let at = |s: &str| format!("layers.{layer}.{s}");
    let p = param(block);
    let (module, part) = match block.rsplit_once('/').map(|(m, _)| m) {
        Some(m) => m.split_once('/').unwrap_or((m, "")),
        None => return Ok(()),
    };
    let t = tensor(var)?;
    match (module, part) {
        ("self_attention", "layer_norm") => put(at(&format!("self_attn_layer_norm.{p}")), t),
        ("attention", "layer_norm") => put(at(&format!("encoder_attn_layer_norm.{p}")), t),
        ("ffn", "layer_norm") => put(at(&format!("final_layer_norm.{p}")), t),
        ("ffn", "linear_0") => put(at(&format!("fc1.{p}")), t),
        ("ffn", "linear_1") => put(at(&format!("fc2.{p}")), t),
        ("self_attention", "linear_0") => {
            ensure!(t.dim(0)? == 3 * d, "fused QKV has {} rows", t.dim(0)?);
            put(at(&format!("self_attn.q_proj.{p}")), t.narrow(0, 0, d)?);
            if p == "weight" {
                put(at("self_attn.k_proj.weight"), t.narrow(0, d, d)?);
            }
            put(at(&format!("self_attn.v_proj.{p}")), t.narrow(0, 2 * d, d)?);
        }
        ("self_attention", "linear_1") => put(at(&format!("self_attn.out_proj.{p}")), t),
        ("attention", "linear_0") => put(at(&format!("encoder_attn.q_proj.{p}")), t),
        ("attention", "linear_1") => {
            ensure!(t.dim(0)? == 2 * d, "fused KV has {} rows", t.dim(0)?);
            if p == "weight" {
                put(at("encoder_attn.k_proj.weight"), t.narrow(0, 0, d)?);
            }
            put(at(&format!("encoder_attn.v_proj.{p}")), t.narrow(0, d, d)?);
        }
        ("attention", "linear_2") => put(at(&format!("encoder_attn.out_proj.{p}")), t),
        _ => bail!("unexpected variable"),
    }
    Ok(())
}

/// CTranslate2's layer-norm `gamma`/`beta` are candle's `weight`/`bias`.
fn param(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("gamma" | "weight") => "weight",
        _ => "bias",
    }
}

/// The variable as an `f32` tensor (candle's Whisper computes in `f32` on the CPU).
fn tensor(var: &Variable<'_>) -> anyhow::Result<Tensor> {
    let values: Vec<f32> = match var.dtype {
        FLOAT32 => var
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        FLOAT16 => var
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        BFLOAT16 => var
            .data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => bail!("data type {other} where a float tensor was expected"),
    };
    Ok(Tensor::from_vec(
        values,
        var.shape.as_slice(),
        &Device::Cpu,
    )?)
}

/// Reads the file front to back; every read is bounds-checked against the buffer.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| anyhow!("truncated at byte {} (wanted {n} more)", self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> anyhow::Result<String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Ok(String::from_utf8(bytes.to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `model.bin` holding the given variables (all float32) and no aliases.
    fn model_bin(spec: &str, vars: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
        let mut out = BINARY_VERSION.to_le_bytes().to_vec();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        string(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, shape, values) in vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for d in *shape {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(FLOAT32);
            out.extend_from_slice(&(values.len() as u32 * 4).to_le_bytes());
            for v in *values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    #[test]
    fn reads_variables_and_refuses_other_specs() {
        let bin = model_bin(
            SPEC_NAME,
            &[("decoder/layer_norm/gamma", &[2], &[1.0, 2.0])],
        );
        let vars = parse(&bin).unwrap();
        assert_eq!(vars["decoder/layer_norm/gamma"].shape, vec![2]);
        let err = parse(&model_bin("TransformerSpec", &[])).err().unwrap();
        assert!(err.to_string().contains("WhisperSpec"), "{err}");
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let bin = model_bin(
            SPEC_NAME,
            &[("decoder/layer_norm/gamma", &[2], &[1.0, 2.0])],
        );
        for cut in 0..bin.len() {
            assert!(parse(&bin[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn fused_self_attention_splits_into_q_k_v() {
        let config = Config {
            num_mel_bins: 80,
            max_source_positions: 1,
            d_model: 1,
            encoder_attention_heads: 1,
            encoder_layers: 1,
            vocab_size: 1,
            max_target_positions: 1,
            decoder_attention_heads: 1,
            decoder_layers: 1,
            suppress_tokens: Vec::new(),
        };
        let weight = [1f32, 2.0, 3.0];
        let bytes: Vec<u8> = weight.iter().flat_map(|v| v.to_le_bytes()).collect();
        let var = Variable {
            shape: vec![3, 1],
            dtype: FLOAT32,
            data: &bytes,
        };
        let mut out = HashMap::new();
        map_variable(
            "decoder/layer_0/self_attention/linear_0/weight",
            &var,
            &config,
            &mut out,
        )
        .unwrap();
        let get = |n: &str| out[n].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            get("model.decoder.layers.0.self_attn.q_proj.weight"),
            vec![1.0]
        );
        assert_eq!(
            get("model.decoder.layers.0.self_attn.k_proj.weight"),
            vec![2.0]
        );
        assert_eq!(
            get("model.decoder.layers.0.self_attn.v_proj.weight"),
            vec![3.0]
        );
    }
}
