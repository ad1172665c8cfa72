#include "runtime/weights.h"

#include <fmt/format.h>

#include "quant/quant.h"

namespace qwenmux::runtime {

namespace {

class Binder {
 public:
  Binder(const gguf::File& f) : f_(f) {}

  // A matrix with ne = [cols, rows(, experts)] bound as a view with rows*experts rows.
  Result<WeightView> Matrix(const std::string& name, uint64_t cols, uint64_t rows, uint64_t experts = 0) {
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) return Error(StatusCode::kNotFound, "model: {}: missing tensor {}", f_.name(), name);
    const uint32_t want_dims = experts ? 3 : 2;
    const bool shape_ok = t->n_dims == want_dims && t->ne[0] == cols && t->ne[1] == rows &&
                          (experts == 0 || t->ne[2] == experts);
    if (!shape_ok) {
      const std::string want = experts ? fmt::format("[{}, {}, {}]", cols, rows, experts) : fmt::format("[{}, {}]", cols, rows);
      return Error(StatusCode::kInvalidArgument, "model: {}: tensor {} has shape {}, expected {}", f_.name(), name,
                   t->ShapeString(), want);
    }
    if (!kernels::MatMulSupports(t->type)) {
      return Error(StatusCode::kUnsupported, "model: {}: tensor {} has unsupported type {}", f_.name(), name,
                   gguf::TensorTypeName(t->type));
    }
    WeightView v;
    v.type = t->type;
    v.data = f_.TensorData(*t).data();
    v.rows = static_cast<int64_t>(t->rows());
    v.cols = static_cast<int64_t>(cols);
    v.row_bytes = *gguf::RowBytes(t->type, cols);
    return v;
  }

  Result<std::vector<float>> Vector(const std::string& name, uint64_t n) {
    const gguf::TensorInfo* t = f_.FindTensor(name);
    if (t == nullptr) return Error(StatusCode::kNotFound, "model: {}: missing tensor {}", f_.name(), name);
    if (t->n_dims != 1 || t->ne[0] != n) {
      return Error(StatusCode::kInvalidArgument, "model: {}: tensor {} has shape {}, expected [{}]", f_.name(), name,
                   t->ShapeString(), n);
    }
    std::vector<float> out(n);
    const Status s = quant::DequantizeRow(t->type, f_.TensorData(*t).data(), out.data(), static_cast<int64_t>(n));
    if (!s.ok()) return s.WithContext(fmt::format("model: {}: tensor {}", f_.name(), name));
    return out;
  }

 private:
  const gguf::File& f_;
};

}  // namespace

Result<ModelWeights> BindWeights(const gguf::File& f, const model::ModelConfig& c) {
  Binder b(f);
  ModelWeights w;
  QM_ASSIGN_OR_RETURN(w.token_embd, b.Matrix("token_embd.weight", c.n_embd, c.n_vocab));
  if (c.tied_embeddings) {
    w.output = w.token_embd;
  } else {
    QM_ASSIGN_OR_RETURN(w.output, b.Matrix("output.weight", c.n_embd, c.n_vocab));
  }
  QM_ASSIGN_OR_RETURN(w.output_norm, b.Vector("output_norm.weight", c.n_embd));
  if (f.FindTensor("cls.output.weight") != nullptr) {
    QM_ASSIGN_OR_RETURN(w.cls_output, b.Matrix("cls.output.weight", c.n_embd, 2));
  }
  w.layers.resize(c.n_layer);
  for (uint32_t i = 0; i < c.n_layer; ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = fmt::format("blk.{}.", i);
    QM_ASSIGN_OR_RETURN(l.attn_norm, b.Vector(p + "attn_norm.weight", c.n_embd));
    QM_ASSIGN_OR_RETURN(l.attn_q, b.Matrix(p + "attn_q.weight", c.n_embd, c.q_dim()));
    QM_ASSIGN_OR_RETURN(l.attn_k, b.Matrix(p + "attn_k.weight", c.n_embd, c.kv_dim()));
    QM_ASSIGN_OR_RETURN(l.attn_v, b.Matrix(p + "attn_v.weight", c.n_embd, c.kv_dim()));
    QM_ASSIGN_OR_RETURN(l.q_norm, b.Vector(p + "attn_q_norm.weight", c.head_dim));
    QM_ASSIGN_OR_RETURN(l.k_norm, b.Vector(p + "attn_k_norm.weight", c.head_dim));
    QM_ASSIGN_OR_RETURN(l.attn_output, b.Matrix(p + "attn_output.weight", c.q_dim(), c.n_embd));
    QM_ASSIGN_OR_RETURN(l.ffn_norm, b.Vector(p + "ffn_norm.weight", c.n_embd));
    if (c.is_moe()) {
      QM_ASSIGN_OR_RETURN(l.ffn_gate_inp, b.Matrix(p + "ffn_gate_inp.weight", c.n_embd, c.n_expert));
      QM_ASSIGN_OR_RETURN(l.ffn_gate_exps, b.Matrix(p + "ffn_gate_exps.weight", c.n_embd, c.n_ff_exp, c.n_expert));
      QM_ASSIGN_OR_RETURN(l.ffn_up_exps, b.Matrix(p + "ffn_up_exps.weight", c.n_embd, c.n_ff_exp, c.n_expert));
      QM_ASSIGN_OR_RETURN(l.ffn_down_exps, b.Matrix(p + "ffn_down_exps.weight", c.n_ff_exp, c.n_embd, c.n_expert));
    } else {
      QM_ASSIGN_OR_RETURN(l.ffn_gate, b.Matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff));
      QM_ASSIGN_OR_RETURN(l.ffn_up, b.Matrix(p + "ffn_up.weight", c.n_embd, c.n_ff));
      QM_ASSIGN_OR_RETURN(l.ffn_down, b.Matrix(p + "ffn_down.weight", c.n_ff, c.n_embd));
    }
  }
  return w;
}

}  // namespace qwenmux::runtime
