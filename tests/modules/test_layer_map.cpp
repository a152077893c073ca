// Layer maps (last_aligned, k_nearest, explicit, parsing) and multi-sharer fusion.
#include <gtest/gtest.h>

#include "modules/common/error.h"
#include "modules/layer_map.h"

namespace c2c {
namespace {

std::vector<int64_t> sharers_of(const LayerMap& m) { return m.sharer_layers(); }

TEST(LayerMap, LastAligned) {
  LayerMap m = last_aligned_layer_map(28, 24);  // Qwen3-0.6B <- Qwen2.5-0.5B
  ASSERT_EQ(m.size(), 28);
  for (int t = 0; t <= 4; ++t) EXPECT_EQ(m.pairs[t].sharer, 0) << t;
  EXPECT_EQ(m.pairs[5].sharer, 1);
  EXPECT_EQ(m.pairs[27].sharer, 23);
  LayerMap r = last_aligned_layer_map(24, 28);  // deeper sharer: t -> t + 4
  EXPECT_EQ(r.pairs[0].sharer, 4);
  EXPECT_EQ(r.pairs[23].sharer, 27);
  EXPECT_EQ(sharers_of(last_aligned_layer_map(3, 3)), (std::vector<int64_t>{0, 1, 2}));
}

TEST(LayerMap, KNearest) {
  EXPECT_EQ(sharers_of(k_nearest_layer_map(4, 4)), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(sharers_of(k_nearest_layer_map(3, 5)), (std::vector<int64_t>{0, 2, 4}));
  // Positions 0, .25, .5, .75, 1 times 2: ties (0.5, 1.5) go to the lower layer.
  EXPECT_EQ(sharers_of(k_nearest_layer_map(5, 3)), (std::vector<int64_t>{0, 0, 1, 1, 2}));
  LayerMap m = k_nearest_layer_map(28, 24);
  EXPECT_EQ(m.pairs[0].sharer, 0);
  EXPECT_EQ(m.pairs[27].sharer, 23);
  EXPECT_EQ(m.pairs[14].sharer, 12);  // 14/27*23 = 11.93
  EXPECT_EQ(sharers_of(k_nearest_layer_map(1, 5)), (std::vector<int64_t>{4}));
}

TEST(LayerMap, ParseAndJson) {
  EXPECT_EQ(parse_layer_map("last_aligned", 28, 24).pairs, last_aligned_layer_map(28, 24).pairs);
  EXPECT_EQ(parse_layer_map(" k_nearest ", 5, 3).method, "k_nearest");
  LayerMap a = parse_layer_map("2:1, 0:0", 3, 2);
  EXPECT_EQ(a.method, "explicit");
  EXPECT_EQ(a.pairs, (std::vector<LayerPair>{{0, 0}, {2, 1}}));
  EXPECT_EQ(parse_layer_map("[[2,1],[0,0]]", 3, 2).pairs, a.pairs);
  EXPECT_EQ(parse_layer_map(R"({"2": 1, "0": 0})", 3, 2).pairs, a.pairs);
  LayerMap back = LayerMap::from_json(a.to_json(), "test");
  EXPECT_EQ(back.pairs, a.pairs);
  EXPECT_EQ(back.method, "explicit");
  EXPECT_EQ(parse_layer_map(a.to_json().dump(), 3, 2).pairs, a.pairs);
  EXPECT_EQ(explicit_layer_map({{1, 1}, {0, 0}}, 2, 2).pairs,
            (std::vector<LayerPair>{{0, 0}, {1, 1}}));

  auto error_of = [](const std::string& spec) {
    try {
      parse_layer_map(spec, 3, 2);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("0:2").find("sharer layer 2"), std::string::npos);
  EXPECT_NE(error_of("3:0").find("receiver layer 3"), std::string::npos);
  EXPECT_NE(error_of("0:0,0:1").find("mapped twice"), std::string::npos);
  EXPECT_NE(error_of("nearest").find("HINT"), std::string::npos);
  EXPECT_NE(error_of("a:1").find("not an integer"), std::string::npos);
  EXPECT_NE(error_of("[[0,0],[1]]").find("[receiver_layer, sharer_layer]"), std::string::npos);
  EXPECT_NE(error_of("[[0,").find("not valid JSON"), std::string::npos);
}

FuserConfig tiny(int64_t hs) {
  FuserConfig c;
  c.source_num_heads = hs;
  c.source_head_dim = 4;
  c.target_num_heads = 2;
  c.target_head_dim = 4;
  c.hidden_dim = c.intermediate_dim = 8;
  c.dropout = 0;
  return c;
}

TEST(LayerMap, MultiSharerSequentialAndParallel) {
  torch::manual_seed(0);
  const int64_t T = 3, B = 2, N = 5;
  std::vector<torch::Tensor> rk, rv;
  for (int t = 0; t < T; ++t) {
    rk.push_back(torch::randn({B, 2, N, 4}));
    rv.push_back(torch::randn({B, 2, N, 4}));
  }
  SharerCache a, b;
  a.map = last_aligned_layer_map(3, 2);  // all three receiver layers
  a.fuser = StackedFuser(tiny(1), 3, 1);
  for (int s = 0; s < 2; ++s) {
    a.key.push_back(torch::randn({B, 1, N, 4}));
    a.value.push_back(torch::randn({B, 1, N, 4}));
  }
  b.map = explicit_layer_map({{1, 0}, {2, 0}}, 3, 1);  // layers 1 and 2 only
  b.fuser = StackedFuser(tiny(3), 2, 2);
  b.key.push_back(torch::randn({B, 3, N, 4}));
  b.value.push_back(torch::randn({B, 3, N, 4}));
  for (auto* f : {&a.fuser, &b.fuser}) {
    torch::NoGradGuard g;
    (*f)->named_parameters()["gate_logit"].fill_(1.0);
    (*f)->eval();
  }
  torch::NoGradGuard no_grad;
  FusedCache seq = fuse_multi_sharer(rk, rv, {a, b}, MultiSharerMode::sequential);
  FusedCache par = fuse_multi_sharer(rk, rv, {a, b}, MultiSharerMode::parallel);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t sa = a.map.pairs[t].sharer;
    FusedKV fa = a.fuser->forward_layer(t, a.key[sa], a.value[sa], rk[t], rv[t]);
    torch::Tensor want_seq_k = fa.key, want_seq_v = fa.value;
    torch::Tensor want_par_k = fa.key, want_par_v = fa.value;
    if (t >= 1) {
      FusedKV fb = b.fuser->forward_layer(t - 1, b.key[0], b.value[0], fa.key, fa.value);
      want_seq_k = fb.key;
      want_seq_v = fb.value;
      FusedKV db = b.fuser->forward_layer(t - 1, b.key[0], b.value[0], rk[t], rv[t]);
      want_par_k = fa.key + (db.key - rk[t]);
      want_par_v = fa.value + (db.value - rv[t]);
    }
    EXPECT_TRUE(torch::allclose(seq.key[t], want_seq_k, 1e-5, 1e-5)) << t;
    EXPECT_TRUE(torch::allclose(seq.value[t], want_seq_v, 1e-5, 1e-5)) << t;
    EXPECT_TRUE(torch::allclose(par.key[t], want_par_k, 1e-5, 1e-5)) << t;
    EXPECT_TRUE(torch::allclose(par.value[t], want_par_v, 1e-5, 1e-5)) << t;
  }
  EXPECT_FALSE(torch::allclose(seq.key[2], par.key[2]));  // the modes differ
  EXPECT_EQ(parse_multi_sharer_mode("parallel"), MultiSharerMode::parallel);
  EXPECT_THROW(parse_multi_sharer_mode("mixed"), Error);
}

}  // namespace
}  // namespace c2c
