#include "ps/store/tensor_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/reject_reason.h"
#include "ps/common/status_matchers.h"
#include "ps/optim/optimizer.h"
#include "ps/spec/initializer.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::TensorSpec Dense(const std::string& name, std::vector<int64_t> shape,
                     float lr = 0.5f) {
  v1::TensorSpec spec;
  spec.set_name(name);
  for (int64_t d : shape) spec.add_shape(d);
  spec.mutable_initializer()->set_kind(v1::Initializer::CONSTANT);
  spec.mutable_initializer()->set_value(1.0f);
  spec.mutable_optimizer()->set_kind(v1::OptimizerConfig::SGD);
  spec.mutable_optimizer()->set_learning_rate(lr);
  return spec;
}

v1::TensorSpec Table(const std::string& name, int64_t rows, int64_t dim) {
  v1::TensorSpec spec = Dense(name, {rows, dim});
  spec.set_kind(v1::TensorSpec::EMBEDDING);
  return spec;
}

StoreOptions Options(int shard = 0, int shards = 1, int64_t threshold = 0) {
  StoreOptions options;
  options.shard_index = shard;
  options.placement.set_num_shards(shards);
  options.placement.set_split_threshold_bytes(threshold);
  options.block_floats = 4;
  return options;
}

TEST(TensorStoreTest, PushAppliesTheOptimizerAndBumpsTheVersion) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {2, 3})}), IsOk());
  std::vector<float> grad = {1, 2, 3, 4, 5, 6};
  auto pushed = store.PushDense("w", 0, grad);
  ASSERT_THAT(pushed, IsOk());
  EXPECT_EQ(pushed->version, 1);
  std::vector<float> out(6);
  EXPECT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOkAndHolds(1));
  EXPECT_THAT(out, ElementsAre(0.5f, 0, -0.5f, -1, -1.5f, -2));
  // A pull of the second row only.
  std::vector<float> row(3);
  ASSERT_THAT(store.PullDense("w", 1, absl::MakeSpan(row)), IsOk());
  EXPECT_THAT(row, ElementsAre(-1, -1.5f, -2));
}

TEST(TensorStoreTest, ADenseViewNeverChangesUnderItsReader) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {4, 2})}), IsOk());
  auto view = store.PullDenseView("w", 1, 4);  // rows 1 and 2
  ASSERT_THAT(view, IsOk());
  EXPECT_EQ(view->version, 0);
  EXPECT_THAT(view->values, ElementsAre(1, 1, 1, 1));
  const float* shared = view->values.data();
  // A push while the view is held goes to a copy of the part.
  ASSERT_THAT(store.PushDense("w", 0, std::vector<float>(8, 2.0f)), IsOk());
  EXPECT_THAT(view->values, ElementsAre(1, 1, 1, 1));
  auto after = store.PullDenseView("w", 1, 4);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->version, 1);
  EXPECT_THAT(after->values, ElementsAre(0, 0, 0, 0));  // 1 - 0.5 * 2
  EXPECT_NE(after->values.data(), shared);
  // Without a view held, a push changes the part in place.
  const float* current = after->values.data();
  after = DenseView();
  view = DenseView();
  ASSERT_THAT(store.PushDense("w", 0, std::vector<float>(8, 2.0f)), IsOk());
  auto third = store.PullDenseView("w", 0, 8);
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(third->values.data() + 2, current);
  EXPECT_THAT(third->values, ElementsAre(-1, -1, -1, -1, -1, -1, -1, -1));
  std::vector<float> copy(8);
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(copy)), IsOkAndHolds(2));
  EXPECT_THAT(copy, ElementsAre(-1, -1, -1, -1, -1, -1, -1, -1));
  // The same checks as PullDense.
  EXPECT_THAT(
      store.PullDenseView("w", 3, 4),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not within")));
  EXPECT_THAT(store.PullDenseView("w", 0, 3),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a multiple")));
  EXPECT_THAT(store.PullDenseView("w", 0, -8),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.PullDenseView("nope", 0, 2),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(TensorStoreTest, ViewsTakenWhilePushesRunAreEachOneConsistentState) {
  // Every push adds 1 to every value (SGD, lr 0.5, gradient -2): a view is
  // consistent when all its values are equal, whatever the pushes do later.
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {64, 16})}), IsOk());
  std::atomic<bool> stop{false};
  std::thread pusher([&] {
    const std::vector<float> grad(64 * 16, -2.0f);
    for (int i = 0; i < 2000 && !stop; ++i) {
      ASSERT_THAT(store.PushDense("w", 0, grad), IsOk());
    }
  });
  std::vector<DenseView> held;
  for (int i = 0; i < 300; ++i) {
    auto view = store.PullDenseView("w", 0, 64 * 16);
    ASSERT_THAT(view, IsOk());
    held.push_back(*std::move(view));
    if (held.size() > 8) held.erase(held.begin());
    for (const DenseView& v : held) {
      // Version v means v pushes applied: every value is 1 + v.
      for (float x : v.values) {
        ASSERT_EQ(x, 1.0f + v.version) << "a view changed under its reader";
      }
    }
  }
  stop = true;
  pusher.join();
}

TEST(TensorStoreTest, CreateIsIdempotentAndRejectsADifferentSpec) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {4})}), IsOk());
  auto again = store.CreateTensors({Dense("w", {4})});
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->existing, 1);
  EXPECT_EQ(again->created, 0);
  auto conflict = store.CreateTensors({Dense("v", {1}), Dense("w", {5})});
  EXPECT_THAT(conflict, StatusIs(absl::StatusCode::kAlreadyExists,
                                 HasSubstr("shape: 5")));
  EXPECT_THAT(conflict.status().message(), HasSubstr("shape: 4"));
  EXPECT_EQ(RejectReasonOf(conflict.status()), kReasonSpecConflict);
  // All or nothing: "v" was not created.
  EXPECT_THAT(store.Describe("v"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(TensorStoreTest, BadPushesAreRejectedAndChangeNothing) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {2, 3}), Table("e", 0, 2)}),
              IsOk());
  std::vector<float> five(5, 1.0f);
  std::vector<float> six(6, 1.0f);
  auto expect = [&](absl::StatusOr<PushResult> r, absl::StatusCode code,
                    absl::string_view reason) {
    EXPECT_THAT(r, StatusIs(code));
    EXPECT_EQ(RejectReasonOf(r.status()), reason) << r.status();
  };
  expect(store.PushDense("nope", 0, six), absl::StatusCode::kNotFound,
         kReasonUnknownTensor);
  expect(store.PushDense("w", 0, five), absl::StatusCode::kInvalidArgument,
         kReasonWrongShape);
  expect(store.PushDense("w", 1, six), absl::StatusCode::kInvalidArgument,
         kReasonRowsOutOfRange);
  expect(store.PushDense("w", -1, six), absl::StatusCode::kInvalidArgument,
         kReasonRowsOutOfRange);
  std::vector<float> nan = six;
  nan[4] = std::numeric_limits<float>::quiet_NaN();
  expect(store.PushDense("w", 0, nan), absl::StatusCode::kInvalidArgument,
         kReasonNonFinite);
  nan[4] = std::numeric_limits<float>::infinity();
  expect(store.PushDense("w", 0, nan), absl::StatusCode::kInvalidArgument,
         kReasonNonFinite);
  expect(store.PushDense("e", 0, six), absl::StatusCode::kInvalidArgument,
         kReasonWrongKind);
  std::vector<uint64_t> ids = {1, 2};
  expect(store.PushRows("e", ids, six), absl::StatusCode::kInvalidArgument,
         kReasonWrongShape);
  std::vector<float> out(6);
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOkAndHolds(0));
  EXPECT_THAT(out, ElementsAre(1, 1, 1, 1, 1, 1));
}

TEST(TensorStoreTest, NonFiniteGradientsCanBeSkipped) {
  StoreOptions options = Options();
  options.non_finite = NonFinitePolicy::kSkip;
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({Dense("w", {2})}), IsOk());
  std::vector<float> grad = {NAN, 1};
  auto r = store.PushDense("w", 0, grad);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->skipped);
  EXPECT_EQ(r->version, 0);
}

TEST(TensorStoreTest, EmbeddingRowsAreCreatedOnFirstTouchAndSummedOnRepeat) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 2)}), IsOk());
  std::vector<uint64_t> ids = {7, 1000000007, 7};
  std::vector<float> grad = {1, 1, 2, 2, 3, 3};
  ASSERT_THAT(store.PushRows("e", ids, grad), IsOk());
  std::vector<uint64_t> both = {7, 1000000007};
  std::vector<float> out(4);
  ASSERT_THAT(store.PullRows("e", both, absl::MakeSpan(out)), IsOk());
  // Row 7: 1 - 0.5 * (1 + 3); row 1000000007: 1 - 0.5 * 2.
  EXPECT_THAT(out, ElementsAre(-1, -1, 0, 0));
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(7, 1000000007)));
}

TEST(TensorStoreTest, RowsOfAnotherShardOrOutOfRangeAreRejected) {
  TensorStore store(Options(0, 4));
  ASSERT_THAT(store.CreateTensors({Table("e", 100, 1)}), IsOk());
  uint64_t foreign = 0;
  while (ShardOfRow(foreign, 4) == 0) ++foreign;
  std::vector<uint64_t> ids = {foreign};
  std::vector<float> out(1);
  EXPECT_THAT(store.PullRows("e", ids, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("belongs to shard")));
  ids = {100};
  EXPECT_THAT(
      store.PullRows("e", ids, absl::MakeSpan(out)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

TEST(TensorStoreTest, TablesPushAndPullMoveEveryTableInOneCall) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Table("a", 0, 2), Table("b", 10, 1)}),
              IsOk());
  std::vector<uint64_t> a_ids = {7, 7}, b_ids = {3};
  std::vector<float> a_grad = {1, 1, 3, 3}, b_grad = {2};
  std::vector<TableRowsUpdate> push = {{"a", a_ids, a_grad},
                                       {"b", b_ids, b_grad}};
  auto pushed = store.PushTables(push);
  ASSERT_THAT(pushed, IsOk());
  EXPECT_FALSE(pushed->skipped);
  EXPECT_THAT(pushed->versions, ElementsAre(1, 1));
  std::vector<uint64_t> a_pull = {7, 8};
  std::vector<float> a_out(4), b_out(1);
  std::vector<TableRowsRead> pull = {{"b", b_ids, absl::MakeSpan(b_out)},
                                     {"a", a_pull, absl::MakeSpan(a_out)}};
  EXPECT_THAT(store.PullTables(pull), IsOkAndHolds(ElementsAre(1, 1)));
  // Row 7: 1 - 0.5 * (1 + 3); row 8 was never pushed: its initial 1.
  EXPECT_THAT(a_out, ElementsAre(-1, -1, 1, 1));
  EXPECT_THAT(b_out, ElementsAre(0));
}

TEST(TensorStoreTest, ATablesPushWithOneBadTableChangesNoTable) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors(
                  {Table("a", 0, 2), Table("b", 10, 1), Dense("w", {2})}),
              IsOk());
  std::vector<uint64_t> a_ids = {7}, b_ids = {3}, far = {10};
  std::vector<float> a_grad = {1, 1}, b_grad = {2}, nan = {NAN};
  auto refused = [&](std::vector<TableRowsUpdate> push,
                     const std::string& why) {
    EXPECT_THAT(store.PushTables(push),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(why)))
        << why;
  };
  refused({{"a", a_ids, a_grad}, {"b", far, b_grad}}, "out of range");
  refused({{"a", a_ids, a_grad}, {"b", b_ids, a_grad}}, "need 1 x 1");
  refused({{"a", a_ids, a_grad}, {"w", b_ids, b_grad}}, "dense tensor");
  refused({{"a", a_ids, a_grad}, {"b", b_ids, nan}}, "NaN");
  refused({{"a", a_ids, a_grad}, {"a", a_ids, a_grad}}, "twice");
  EXPECT_THAT(store.PushTables({{{"a", a_ids, a_grad}, {"x", b_ids, b_grad}}}),
              StatusIs(absl::StatusCode::kNotFound));
  // Nothing was applied: no rows, versions 0.
  EXPECT_THAT(store.RowIds("a"), IsOkAndHolds(ElementsAre()));
  EXPECT_THAT(store.RowIds("b"), IsOkAndHolds(ElementsAre()));
  std::vector<float> out(2);
  EXPECT_THAT(store.PullRows("a", a_ids, absl::MakeSpan(out)), IsOkAndHolds(0));
  // A pull with one bad table fills nothing.
  std::vector<float> a_out = {5, 5}, b_out = {5};
  std::vector<TableRowsRead> pull = {{"a", a_ids, absl::MakeSpan(a_out)},
                                     {"b", far, absl::MakeSpan(b_out)}};
  EXPECT_THAT(store.PullTables(pull),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(a_out, ElementsAre(5, 5));
}

TEST(TensorStoreTest, DenseBatchesMoveEveryTensorInOneCall) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {2, 3}), Dense("b", {3})}),
              IsOk());
  std::vector<float> w_grad = {1, 2, 3}, b_grad = {2, 2, 2};
  // Row 1 of w and all of b.
  auto pushed = store.PushDenseBatch({{{"w", 1, w_grad}, {"b", 0, b_grad}}});
  ASSERT_THAT(pushed, IsOk());
  EXPECT_FALSE(pushed->skipped);
  EXPECT_THAT(pushed->versions, ElementsAre(1, 1));
  std::vector<float> w_out(6), b_out(3);
  std::vector<DenseRangeRead> pull = {{"b", 0, absl::MakeSpan(b_out)},
                                      {"w", 0, absl::MakeSpan(w_out)}};
  EXPECT_THAT(store.PullDenseBatch(pull), IsOkAndHolds(ElementsAre(1, 1)));
  EXPECT_THAT(w_out, ElementsAre(1, 1, 1, 0.5f, 0, -0.5f));
  EXPECT_THAT(b_out, ElementsAre(0, 0, 0));
}

TEST(TensorStoreTest, ADenseBatchWithOneBadRangeChangesNoTensor) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors(
                  {Dense("w", {2, 3}), Dense("b", {3}), Table("e", 0, 3)}),
              IsOk());
  std::vector<float> row = {1, 1, 1}, nan = {1, NAN, 1}, two = {1, 1};
  auto refused = [&](std::vector<DenseRangeUpdate> push, absl::StatusCode code,
                     const std::string& why) {
    EXPECT_THAT(store.PushDenseBatch(push), StatusIs(code, HasSubstr(why)))
        << why;
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  refused({{"w", 0, row}, {"b", 1, row}}, kInvalid, "not within");
  refused({{"w", 0, row}, {"w", 1, row}}, kInvalid, "twice");
  refused({{"w", 0, row}, {"b", 2, two}}, kInvalid, "not within");
  refused({{"w", 0, row}, {"w2", 0, row}}, absl::StatusCode::kNotFound, "");
  refused({{"w", 0, row}, {"e", 0, row}}, kInvalid, "embedding table");
  refused({{"w", 0, row}, {"b", 0, nan}}, kInvalid, "NaN");
  refused({{"w", 2, row}}, kInvalid, "not within");
  refused({{"w", -1, row}}, kInvalid, "not within");
  // Nothing was applied: versions 0, the initial values.
  std::vector<float> w_out(6, 5), b_out(3, 5);
  std::vector<DenseRangeRead> pull = {{"w", 0, absl::MakeSpan(w_out)},
                                      {"b", 0, absl::MakeSpan(b_out)}};
  EXPECT_THAT(store.PullDenseBatch(pull), IsOkAndHolds(ElementsAre(0, 0)));
  EXPECT_THAT(w_out, ElementsAre(1, 1, 1, 1, 1, 1));
  // A pull with one bad range fills nothing.
  std::fill(w_out.begin(), w_out.end(), 5);
  std::vector<float> far(3, 5);
  std::vector<DenseRangeRead> bad = {{"w", 0, absl::MakeSpan(w_out)},
                                     {"b", 1, absl::MakeSpan(far)}};
  EXPECT_THAT(store.PullDenseBatch(bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(w_out, ElementsAre(5, 5, 5, 5, 5, 5));
}

TEST(TensorStoreTest, ANonFiniteDenseBatchIsSkippedWhole) {
  StoreOptions options = Options();
  options.non_finite = NonFinitePolicy::kSkip;
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({Dense("a", {1}), Dense("b", {1})}), IsOk());
  std::vector<float> one = {1}, nan = {NAN};
  auto pushed = store.PushDenseBatch({{{"a", 0, one}, {"b", 0, nan}}});
  ASSERT_THAT(pushed, IsOk());
  EXPECT_TRUE(pushed->skipped);
  EXPECT_THAT(pushed->versions, ElementsAre(0, 0));
  std::vector<float> out(1);
  EXPECT_THAT(store.PullDense("a", 0, absl::MakeSpan(out)), IsOkAndHolds(0));
  EXPECT_THAT(out, ElementsAre(1));
}

TEST(TensorStoreTest, ANonFiniteTablesPushIsSkippedWhole) {
  StoreOptions options = Options();
  options.non_finite = NonFinitePolicy::kSkip;
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({Table("a", 0, 1), Table("b", 0, 1)}),
              IsOk());
  std::vector<uint64_t> ids = {1};
  std::vector<float> one = {1}, nan = {NAN};
  auto pushed = store.PushTables({{{"a", ids, one}, {"b", ids, nan}}});
  ASSERT_THAT(pushed, IsOk());
  EXPECT_TRUE(pushed->skipped);
  EXPECT_THAT(pushed->versions, ElementsAre(0, 0));
  EXPECT_THAT(store.RowIds("a"), IsOkAndHolds(ElementsAre()));
}

TEST(TensorStoreTest, ATablesPushBeyondTheBudgetCreatesNoRow) {
  const std::vector<uint64_t> two = {1, 2};
  const std::vector<float> g2 = {1, 1};
  const std::vector<TableRowsUpdate> push = {{"a", two, g2}, {"b", two, g2}};
  // What the push allocates, measured on a store without a budget.
  int64_t before = 0, need = 0;
  {
    TensorStore store(Options());
    ASSERT_THAT(store.CreateTensors({Table("a", 0, 1), Table("b", 0, 1)}),
                IsOk());
    before = store.memory_bytes();
    ASSERT_THAT(store.PushTables(push), IsOk());
    need = store.memory_bytes() - before;
  }
  ASSERT_GT(need, 0);
  StoreOptions options = Options();
  options.max_memory_bytes = before + need - 1;
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({Table("a", 0, 1), Table("b", 0, 1)}),
              IsOk());
  EXPECT_THAT(store.PushTables(push),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("4 new rows of 2 tables")));
  EXPECT_EQ(store.memory_bytes(), before);
  EXPECT_THAT(store.RowIds("a"), IsOkAndHolds(ElementsAre()));
  // Table a's rows alone fit: the refusal was the whole push's.
  EXPECT_THAT(store.PushTables({{push[0]}}), IsOk());
  EXPECT_THAT(store.RowIds("b"), IsOkAndHolds(ElementsAre()));

  options.max_memory_bytes = before + need;
  TensorStore exact(options);
  ASSERT_THAT(exact.CreateTensors({Table("a", 0, 1), Table("b", 0, 1)}),
              IsOk());
  EXPECT_THAT(exact.PushTables(push), IsOk());
  EXPECT_EQ(exact.memory_bytes(), before + need);
}

TEST(TensorStoreTest, SplitTensorHoldsOnlyThisShardsRows) {
  TensorStore store(Options(1, 2, 0));
  auto created = store.CreateTensors({Dense("w", {10, 2})});
  ASSERT_THAT(created, IsOk());
  auto info = store.Describe("w");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->row_begin(), 5);
  EXPECT_EQ(info->row_end(), 10);
  std::vector<float> grad(4, 1.0f);
  EXPECT_THAT(store.PushDense("w", 5, grad), IsOk());
  EXPECT_THAT(store.PushDense("w", 4, grad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not within this shard's rows [5, 10)")));
  EXPECT_EQ(store.parameter_bytes(), 5 * 2 * 4);
}

TEST(TensorStoreTest, TakeDirtyReturnsOnlyTouchedBlocksOnce) {
  TensorStore store(Options());  // 4 floats per block
  ASSERT_THAT(store.CreateTensors({Dense("w", {5, 2}), Dense("u", {1})}),
              IsOk());
  std::vector<float> grad(2, 1.0f);
  ASSERT_THAT(store.PushDense("w", 3, grad), IsOk());  // floats 6..7: block 1
  DirtySnapshot first;
  store.TakeDirty(&first);
  ASSERT_EQ(first.blocks.size(), 1u);
  EXPECT_EQ(first.blocks[0].block, 1);
  ASSERT_EQ(first.versions.size(), 1u);
  EXPECT_EQ(first.versions[0].version, 1);
  DirtySnapshot second;
  store.TakeDirty(&second);
  EXPECT_TRUE(second.empty());
  store.MarkDirty(first);
  DirtySnapshot third;
  store.TakeDirty(&third);
  EXPECT_EQ(third.blocks.size(), 1u);
}

TEST(TensorStoreTest, InitialValuesDoNotDependOnTheSplit) {
  v1::TensorSpec spec = Dense("w", {9, 3});
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(1.0f);
  spec.mutable_initializer()->set_seed(42);
  TensorStore whole(Options(0, 1));
  ASSERT_THAT(whole.CreateTensors({spec}), IsOk());
  std::vector<float> all(27);
  ASSERT_THAT(whole.PullDense("w", 0, absl::MakeSpan(all)), IsOk());
  for (int shard = 0; shard < 3; ++shard) {
    TensorStore part(Options(shard, 3));
    ASSERT_THAT(part.CreateTensors({spec}), IsOk());
    std::vector<float> rows(9);
    ASSERT_THAT(part.PullDense("w", shard * 3, absl::MakeSpan(rows)), IsOk());
    for (int i = 0; i < 9; ++i) EXPECT_EQ(rows[i], all[shard * 9 + i]);
  }
}

TEST(TensorStoreTest, MemoryBudgetRefusesHugeTensorsAndRowsWithoutCrashing) {
  StoreOptions options = Options();
  options.max_memory_bytes = 1 << 20;
  TensorStore store(options);
  // 400 GB: refused before anything is allocated.
  auto huge = store.CreateTensors({Dense("huge", {100000000, 1000})});
  EXPECT_THAT(huge, StatusIs(absl::StatusCode::kResourceExhausted,
                             HasSubstr("--max_memory_bytes")));
  EXPECT_EQ(RejectReasonOf(huge.status()), kReasonOutOfMemory);
  EXPECT_EQ(store.num_tensors(), 0);
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 1024)}), IsOk());
  std::vector<uint64_t> ids(512);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  std::vector<float> grad(ids.size() * 1024, 0.5f);
  EXPECT_THAT(store.PushRows("e", ids, grad),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(store.memory_bytes(), 0);
}

TEST(TensorStoreTest, PullsOfNewRowsCostNoMemoryAndReadTheirInitialValues) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 8)}), IsOk());
  std::vector<uint64_t> ids(100000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i * 7919;
  std::vector<float> first(ids.size() * 8), again(ids.size() * 8);
  ASSERT_THAT(store.PullRows("e", ids, absl::MakeSpan(first)), IsOk());
  EXPECT_EQ(store.memory_bytes(), 0);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(::testing::IsEmpty()));
  // A pure function of spec and id: the same again, and the same values a
  // push starts from.
  ASSERT_THAT(store.PullRows("e", ids, absl::MakeSpan(again)), IsOk());
  EXPECT_EQ(first, again);
  const uint64_t one[] = {ids[3]};
  std::vector<float> zero(8, 0.0f), row(8);
  ASSERT_THAT(store.PushRows("e", one, zero), IsOk());
  ASSERT_THAT(store.PullRows("e", one, absl::MakeSpan(row)), IsOk());
  EXPECT_EQ(row, std::vector<float>(first.begin() + 24, first.begin() + 32));
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(::testing::ElementsAre(ids[3])));
}

TEST(TensorStoreTest, RowRangesNearInt64MaxAreRefusedNotWrapped) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("a", {64, 2}), Dense("b", {64, 2})}),
              IsOk());
  std::vector<float> before(128);
  ASSERT_THAT(store.PullDense("a", 0, absl::MakeSpan(before)), IsOk());
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  for (int64_t begin : {kMax, kMax - 63, kMax - 1, int64_t{64},
                        std::numeric_limits<int64_t>::min(), int64_t{-1}}) {
    for (size_t rows : {1, 20, 64}) {
      std::vector<float> out(rows * 2, -7.0f);
      auto pulled = store.PullDense("a", begin, absl::MakeSpan(out));
      EXPECT_THAT(pulled, StatusIs(absl::StatusCode::kInvalidArgument))
          << begin << " + " << rows;
      EXPECT_EQ(RejectReasonOf(pulled.status()), kReasonRowsOutOfRange);
      EXPECT_EQ(out, std::vector<float>(rows * 2, -7.0f));  // nothing read
      std::vector<float> grad(rows * 2, 1.0f);
      EXPECT_THAT(store.PushDense("a", begin, grad),
                  StatusIs(absl::StatusCode::kInvalidArgument));
    }
  }
  std::vector<float> after(128);
  ASSERT_THAT(store.PullDense("a", 0, absl::MakeSpan(after)), IsOk());
  EXPECT_EQ(before, after);
}

TEST(TensorStoreTest, PreparedTensorsAreInvisibleUntilPublished) {
  TensorStore store(Options());
  auto pending = store.PrepareTensors({Dense("a", {4}), Table("e", 0, 2)});
  ASSERT_THAT(pending, IsOk());
  EXPECT_EQ(pending->new_specs().size(), 2);
  EXPECT_EQ(store.num_tensors(), 0);
  EXPECT_THAT(store.Describe("a"), StatusIs(absl::StatusCode::kNotFound));
  // Dropping it leaves nothing; preparing again still sees new tensors.
  pending = store.PrepareTensors({Dense("a", {4})});
  ASSERT_THAT(pending, IsOk());
  CreateResult result = store.Publish(*std::move(pending));
  EXPECT_EQ(result.created, 1);
  EXPECT_THAT(store.Describe("a"), IsOk());
  auto again = store.PrepareTensors({Dense("a", {4})});
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->new_specs().empty());
  EXPECT_EQ(again->result().existing, 1);
}

TEST(TensorStoreTest, ConcurrentPushesAreAllApplied) {
  TensorStore store(Options());
  ASSERT_THAT(
      store.CreateTensors({Dense("a", {64}, 1.0f), Dense("b", {64}, 1.0f)}),
      IsOk());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, t] {
      std::vector<float> grad(64, 1.0f);
      for (int i = 0; i < 500; ++i) {
        ASSERT_THAT(store.PushDense(t % 2 ? "a" : "b", 0, grad), IsOk());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<float> out(64);
  EXPECT_THAT(store.PullDense("a", 0, absl::MakeSpan(out)), IsOkAndHolds(1000));
  EXPECT_EQ(out[0], 1.0f - 1000);
}

TEST(TensorStoreTest, InitializeSetsAPartOnceAndASecondCallChangesNothing) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {2, 3})}), IsOk());
  const std::vector<float> init = {1, 2, 3, 4, 5, 6};
  auto first = store.InitializeDense("w", 0, init);
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->applied);
  EXPECT_EQ(first->version, 1);
  EXPECT_TRUE(first->unpersisted);
  std::vector<float> out(6);
  EXPECT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOkAndHolds(1));
  EXPECT_EQ(out, init);

  auto second = store.InitializeDense("w", 0, std::vector<float>(6, 9.0f));
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->applied);
  EXPECT_EQ(second->version, 1);
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out, init);

  // Every block is dirty, with the marker; once written, it is persisted.
  DirtySnapshot snapshot;
  store.TakeDirty(&snapshot);
  EXPECT_EQ(snapshot.blocks.size(), 2u);  // 6 floats in blocks of 4
  ASSERT_EQ(snapshot.versions.size(), 1u);
  EXPECT_TRUE(snapshot.versions[0].initialized);
  EXPECT_EQ(snapshot.versions[0].version, 1);
  store.MarkPersisted(snapshot);
  auto third = store.InitializeDense("w", 0, init);
  ASSERT_THAT(third, IsOk());
  EXPECT_FALSE(third->unpersisted);

  // A push after it applies on top of the initial values.
  std::vector<float> grad(6, 2.0f);
  ASSERT_THAT(store.PushDense("w", 0, grad), IsOk());
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOkAndHolds(2));
  EXPECT_THAT(out, ElementsAre(0, 1, 2, 3, 4, 5));
}

TEST(TensorStoreTest, InitializeAfterAPushIsNotApplied) {
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({Dense("w", {4})}), IsOk());
  ASSERT_THAT(store.PushDense("w", 0, std::vector<float>(4, 1.0f)), IsOk());
  auto init = store.InitializeDense("w", 0, std::vector<float>(4, 7.0f));
  ASSERT_THAT(init, IsOk());
  EXPECT_FALSE(init->applied);
  EXPECT_FALSE(init->unpersisted);
  EXPECT_EQ(init->version, 1);
  std::vector<float> out(4);
  ASSERT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)), IsOk());
  EXPECT_THAT(out, ElementsAre(0.5f, 0.5f, 0.5f, 0.5f));
}

TEST(TensorStoreTest, BadInitializationsAreRefusedAndChangeNothing) {
  // Two shards, "w" split: this shard (1) holds rows [2, 4).
  TensorStore store(Options(1, 2, 0));
  ASSERT_THAT(store.CreateTensors({Dense("w", {4, 2}), Table("e", 0, 2)}),
              IsOk());
  auto part = store.Describe("w");
  ASSERT_THAT(part, IsOk());
  ASSERT_EQ(part->row_begin(), 2);
  const std::vector<float> good(4, 3.0f);
  auto refused = [&](absl::StatusOr<InitializeResult> r, absl::StatusCode code,
                     const char* reason) {
    EXPECT_THAT(r, StatusIs(code));
    EXPECT_EQ(RejectReasonOf(r.status()), reason);
  };
  refused(store.InitializeDense("nope", 2, good), absl::StatusCode::kNotFound,
          kReasonUnknownTensor);
  refused(store.InitializeDense("e", 0, good),
          absl::StatusCode::kInvalidArgument, kReasonWrongKind);
  refused(store.InitializeDense("w", 0, good),
          absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange);
  refused(store.InitializeDense("w", 3, std::vector<float>(2, 3.0f)),
          absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange);
  refused(store.InitializeDense("w", std::numeric_limits<int64_t>::max(), good),
          absl::StatusCode::kInvalidArgument, kReasonRowsOutOfRange);
  refused(store.InitializeDense("w", 2, std::vector<float>(6, 3.0f)),
          absl::StatusCode::kInvalidArgument, kReasonWrongShape);
  refused(store.InitializeDense("w", 2, {}), absl::StatusCode::kInvalidArgument,
          kReasonWrongShape);
  std::vector<float> nan = good;
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  refused(store.InitializeDense("w", 2, nan),
          absl::StatusCode::kInvalidArgument, kReasonNonFinite);
  nan[3] = std::numeric_limits<float>::infinity();
  refused(store.InitializeDense("w", 2, nan),
          absl::StatusCode::kInvalidArgument, kReasonNonFinite);
  // Unchanged: version 0, initial values, nothing dirty; still settable.
  std::vector<float> out(4);
  EXPECT_THAT(store.PullDense("w", 2, absl::MakeSpan(out)), IsOkAndHolds(0));
  EXPECT_THAT(out, ElementsAre(1, 1, 1, 1));
  DirtySnapshot snapshot;
  store.TakeDirty(&snapshot);
  EXPECT_TRUE(snapshot.empty());
  auto ok = store.InitializeDense("w", 2, good);
  ASSERT_THAT(ok, IsOk());
  EXPECT_TRUE(ok->applied);
}

TEST(TensorStoreTest, InitializeRacingPushesLosesNoPush) {
  for (int round = 0; round < 20; ++round) {
    TensorStore store(Options());
    ASSERT_THAT(store.CreateTensors({Dense("w", {64}, 1.0f)}), IsOk());
    constexpr int kPushes = 200;
    std::thread pusher([&store] {
      std::vector<float> grad(64, 1.0f);
      for (int i = 0; i < kPushes; ++i) {
        ASSERT_THAT(store.PushDense("w", 0, grad), IsOk());
      }
    });
    auto init = store.InitializeDense("w", 0, std::vector<float>(64, 1000.0f));
    pusher.join();
    ASSERT_THAT(init, IsOk());
    std::vector<float> out(64);
    // Either the initialization came first and every push is on top of it,
    // or a push came first and the initialization changed nothing.
    const int64_t expected_version = kPushes + (init->applied ? 1 : 0);
    EXPECT_THAT(store.PullDense("w", 0, absl::MakeSpan(out)),
                IsOkAndHolds(expected_version));
    const float base = init->applied ? 1000.0f : 1.0f;
    EXPECT_EQ(out[0], base - kPushes);
    EXPECT_EQ(out[63], base - kPushes);
  }
}

// --- Embedding rows in chunks ----------------------------------------------

// A table whose rows differ (seeded normal initial values) under `kind`.
v1::TensorSpec ChunkedTable(const std::string& name, int64_t dim,
                            v1::OptimizerConfig::Kind kind) {
  v1::TensorSpec spec = Table(name, 0, dim);
  spec.mutable_initializer()->set_kind(v1::Initializer::NORMAL);
  spec.mutable_initializer()->set_stddev(0.1f);
  spec.mutable_initializer()->set_seed(7);
  spec.mutable_optimizer()->set_kind(kind);
  spec.mutable_optimizer()->set_learning_rate(0.1f);
  if (kind == v1::OptimizerConfig::ADAGRAD) {
    spec.mutable_optimizer()->set_initial_accumulator(0.25f);
  }
  return spec;
}

// Chunks of 256 bytes: a few rows each, so a few hundred rows cross dozens of
// chunk boundaries.
StoreOptions SmallChunks() {
  StoreOptions options = Options();
  options.row_chunk_bytes = 256;
  return options;
}

std::vector<uint64_t> Iota(uint64_t begin, uint64_t end, uint64_t stride = 1) {
  std::vector<uint64_t> ids;
  for (uint64_t id = begin; id < end; id += stride) ids.push_back(id);
  return ids;
}

// A gradient that differs per id and round.
std::vector<float> GradFor(absl::Span<const uint64_t> ids, int64_t dim,
                           int round) {
  std::vector<float> grad;
  for (uint64_t id : ids) {
    for (int64_t j = 0; j < dim; ++j) {
      grad.push_back(0.01f * ((id * 31 + j * 7 + round * 13) % 17) - 0.08f);
    }
  }
  return grad;
}

// The same pushes applied to plain vectors, one row at a time: the values,
// slots and step each row must hold.
class ReferenceTable {
 public:
  explicit ReferenceTable(const v1::TensorSpec& spec)
      : spec_(spec),
        dim_(spec.shape(1)),
        optimizer_(*optim::NewOptimizer(ToOptimizerConfig(spec.optimizer()))) {}

  void Push(absl::Span<const uint64_t> ids, absl::Span<const float> grad) {
    for (size_t i = 0; i < ids.size(); ++i) {
      Row& row = rows_[ids[i]];
      const bool created = row.values.empty();
      if (created) row.values.resize(dim_ * (1 + optimizer_->num_slots()));
      const std::vector<float*> slots = SlotsOf(row);
      if (created) {
        InitializeRows(spec_, ids[i], absl::MakeSpan(row.values.data(), dim_));
        optimizer_->InitSlots(slots, dim_);
      }
      optimizer_->Apply(absl::MakeSpan(row.values.data(), dim_),
                        grad.subspan(i * dim_, dim_), slots, ++row.step);
    }
  }

  // dim values, then dim floats per slot, as DirtySnapshot::Row::values.
  const std::vector<float>& Values(uint64_t id) { return rows_[id].values; }
  int64_t Step(uint64_t id) { return rows_[id].step; }

 private:
  struct Row {
    std::vector<float> values;
    int64_t step = 0;
  };
  std::vector<float*> SlotsOf(Row& row) {
    std::vector<float*> slots;
    for (int s = 0; s < optimizer_->num_slots(); ++s) {
      slots.push_back(row.values.data() + (s + 1) * dim_);
    }
    return slots;
  }

  const v1::TensorSpec spec_;
  const int64_t dim_;
  const std::unique_ptr<optim::Optimizer> optimizer_;
  std::map<uint64_t, Row> rows_;
};

class ChunkedTableTest
    : public ::testing::TestWithParam<v1::OptimizerConfig::Kind> {};

TEST_P(ChunkedTableTest, ValuesSlotsAndStepsSurviveGrowthOverManyChunks) {
  constexpr int64_t kDim = 5;  // odd: rows carry a pad float
  const v1::TensorSpec spec = ChunkedTable("e", kDim, GetParam());
  TensorStore store(SmallChunks());
  ASSERT_THAT(store.CreateTensors({spec}), IsOk());
  ReferenceTable reference(spec);
  // Rounds that each touch old rows and create new ones, the new ones
  // crossing chunk boundaries, with a repeated id in each push.
  for (int round = 0; round < 6; ++round) {
    std::vector<uint64_t> ids = Iota(round * 60, round * 60 + 120, 3);
    ids.push_back(ids.front());
    const std::vector<float> grad = GradFor(ids, kDim, round);
    ASSERT_THAT(store.PushRows("e", ids, grad), IsOk());
    // The store sums a repeated id's gradients first.
    std::vector<float> summed(grad.begin(), grad.end() - kDim);
    for (int64_t j = 0; j < kDim; ++j)
      summed[j] += grad[grad.size() - kDim + j];
    ids.pop_back();
    reference.Push(ids, summed);
  }
  auto footprint = store.Footprint("e");
  ASSERT_THAT(footprint, IsOk());
  EXPECT_GT(footprint->chunks, 10);
  const std::vector<uint64_t> held = Iota(0, 420, 3);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(held));
  EXPECT_EQ(footprint->rows, held.size());

  std::vector<float> out(held.size() * kDim);
  ASSERT_THAT(store.PullRows("e", held, absl::MakeSpan(out)), IsOkAndHolds(6));
  DirtySnapshot snapshot;
  store.TakeDirty(&snapshot);
  ASSERT_EQ(snapshot.rows.size(), held.size());
  for (size_t i = 0; i < held.size(); ++i) {
    const std::vector<float>& want = reference.Values(held[i]);
    EXPECT_EQ(std::vector<float>(out.begin() + i * kDim,
                                 out.begin() + (i + 1) * kDim),
              std::vector<float>(want.begin(), want.begin() + kDim))
        << "row " << held[i];
  }
  for (const DirtySnapshot::Row& row : snapshot.rows) {
    EXPECT_EQ(row.values, reference.Values(row.id)) << "row " << row.id;
    EXPECT_EQ(row.step, reference.Step(row.id)) << "row " << row.id;
  }
}

TEST_P(ChunkedTableTest, RestoredRowsAcrossChunksReadAsTheyWereWritten) {
  constexpr int64_t kDim = 4;
  const v1::TensorSpec spec = ChunkedTable("e", kDim, GetParam());
  TensorStore source(SmallChunks());
  ASSERT_THAT(source.CreateTensors({spec}), IsOk());
  const std::vector<uint64_t> ids = Iota(0, 300);
  for (int round = 0; round < 3; ++round) {
    const std::vector<uint64_t> some = Iota(round, 300, round + 1);
    ASSERT_THAT(source.PushRows("e", some, GradFor(some, kDim, round)), IsOk());
  }
  DirtySnapshot written;
  source.TakeDirty(&written);
  ASSERT_EQ(written.rows.size(), ids.size());

  TensorStore restored(SmallChunks());
  ASSERT_THAT(restored.CreateTensors({spec}), IsOk());
  for (const DirtySnapshot::Row& row : written.rows) {
    ASSERT_THAT(restored.RestoreRow("e", row.id, row.step, row.values), IsOk());
  }
  ASSERT_THAT(restored.RestoreVersion("e", 3, 0), IsOk());
  std::vector<float> want(ids.size() * kDim), got(ids.size() * kDim);
  ASSERT_THAT(source.PullRows("e", ids, absl::MakeSpan(want)), IsOk());
  ASSERT_THAT(restored.PullRows("e", ids, absl::MakeSpan(got)),
              IsOkAndHolds(3));
  EXPECT_EQ(got, want);
  EXPECT_THAT(restored.RowIds("e"), IsOkAndHolds(ids));
  EXPECT_EQ(restored.memory_bytes(), source.memory_bytes());
  auto footprint = restored.Footprint("e");
  ASSERT_THAT(footprint, IsOk());
  EXPECT_GT(footprint->chunks, 20);

  // Restored rows are clean; marked dirty, they come out as written (steps
  // and slots too), in the order they were restored.
  DirtySnapshot clean;
  restored.TakeDirty(&clean);
  EXPECT_TRUE(clean.empty());
  restored.MarkDirty(written);
  DirtySnapshot again;
  restored.TakeDirty(&again);
  ASSERT_EQ(again.rows.size(), written.rows.size());
  for (size_t i = 0; i < again.rows.size(); ++i) {
    EXPECT_EQ(again.rows[i].id, written.rows[i].id);
    EXPECT_EQ(again.rows[i].step, written.rows[i].step);
    EXPECT_EQ(again.rows[i].values, written.rows[i].values);
  }
  EXPECT_EQ(again.bytes, written.bytes);

  // Restoring over an existing row replaces it and creates nothing.
  const int64_t bytes = restored.memory_bytes();
  std::vector<float> other(written.rows[0].values.size(), 0.5f);
  ASSERT_THAT(restored.RestoreRow("e", written.rows[0].id, 9, other), IsOk());
  EXPECT_EQ(restored.memory_bytes(), bytes);
  const uint64_t first[] = {written.rows[0].id};
  std::vector<float> row(kDim);
  ASSERT_THAT(restored.PullRows("e", first, absl::MakeSpan(row)), IsOk());
  EXPECT_THAT(row, ::testing::Each(0.5f));
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ChunkedTableTest,
                         ::testing::Values(v1::OptimizerConfig::SGD,
                                           v1::OptimizerConfig::ADAGRAD,
                                           v1::OptimizerConfig::ADAM),
                         [](const auto& info) {
                           return v1::OptimizerConfig::Kind_Name(info.param);
                         });

TEST(TensorStoreTest, RowsKeepTheirAddressWhileTheTableGrows) {
  TensorStore store(SmallChunks());
  ASSERT_THAT(
      store.CreateTensors({ChunkedTable("e", 8, v1::OptimizerConfig::ADAM)}),
      IsOk());
  const std::vector<uint64_t> first = Iota(0, 20);
  ASSERT_THAT(store.PushRows("e", first, GradFor(first, 8, 0)), IsOk());
  std::vector<const void*> addresses;
  for (uint64_t id : first) {
    addresses.push_back(store.RowAddressForTesting("e", id));
    ASSERT_NE(addresses.back(), nullptr);
  }
  EXPECT_EQ(store.RowAddressForTesting("e", 20), nullptr);
  std::vector<float> before(first.size() * 8);
  ASSERT_THAT(store.PullRows("e", first, absl::MakeSpan(before)), IsOk());
  // 500 times as many rows, in pushes of 1000: thousands of chunks, and every
  // index map rehashed several times.
  for (uint64_t begin = 20; begin < 10020; begin += 1000) {
    const std::vector<uint64_t> ids = Iota(begin, begin + 1000);
    ASSERT_THAT(store.PushRows("e", ids, GradFor(ids, 8, 1)), IsOk());
  }
  auto footprint = store.Footprint("e");
  ASSERT_THAT(footprint, IsOk());
  EXPECT_EQ(footprint->rows, 10020);
  EXPECT_GT(footprint->chunks, 1000);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(store.RowAddressForTesting("e", first[i]), addresses[i]);
  }
  std::vector<float> after(first.size() * 8);
  ASSERT_THAT(store.PullRows("e", first, absl::MakeSpan(after)), IsOk());
  EXPECT_EQ(after, before);
}

TEST(TensorStoreTest, DirtyRowsAreTrackedAcrossChunks) {
  TensorStore store(SmallChunks());
  ASSERT_THAT(
      store.CreateTensors({ChunkedTable("e", 3, v1::OptimizerConfig::ADAGRAD)}),
      IsOk());
  const std::vector<uint64_t> all = Iota(0, 400);
  ASSERT_THAT(store.PushRows("e", all, GradFor(all, 3, 0)), IsOk());
  DirtySnapshot created;
  store.TakeDirty(&created);
  EXPECT_EQ(created.rows.size(), all.size());
  // Every 7th row, in reverse, then a few of them again: each comes out once,
  // with its newest values.
  std::vector<uint64_t> some = Iota(0, 400, 7);
  std::reverse(some.begin(), some.end());
  ASSERT_THAT(store.PushRows("e", some, GradFor(some, 3, 1)), IsOk());
  const std::vector<uint64_t> again = {7, 392, 203};
  ASSERT_THAT(store.PushRows("e", again, GradFor(again, 3, 2)), IsOk());
  DirtySnapshot touched;
  store.TakeDirty(&touched);
  std::vector<uint64_t> ids;
  for (const auto& row : touched.rows) {
    ids.push_back(row.id);
    const uint64_t one[] = {row.id};
    std::vector<float> now(3);
    ASSERT_THAT(store.PullRows("e", one, absl::MakeSpan(now)), IsOk());
    EXPECT_EQ(std::vector<float>(row.values.begin(), row.values.begin() + 3),
              now);
    EXPECT_EQ(row.step, row.id == 7 || row.id == 392 || row.id == 203 ? 3 : 2);
  }
  EXPECT_THAT(ids, ::testing::UnorderedElementsAreArray(some));
  ASSERT_EQ(touched.versions.size(), 1u);
  EXPECT_EQ(touched.versions[0].version, 3);
  DirtySnapshot nothing;
  store.TakeDirty(&nothing);
  EXPECT_TRUE(nothing.empty());
  // A failed write puts the marks back: the same rows again, no others.
  store.MarkDirty(touched);
  DirtySnapshot retried;
  store.TakeDirty(&retried);
  ASSERT_EQ(retried.rows.size(), touched.rows.size());
  ids.clear();
  for (const auto& row : retried.rows) ids.push_back(row.id);
  EXPECT_THAT(ids, ::testing::UnorderedElementsAreArray(some));
}

TEST(TensorStoreTest, RowsBeyondATablesLimitAreRefusedAndChangeNothing) {
  StoreOptions options = SmallChunks();
  options.max_table_rows = 10;
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 2), Table("f", 0, 2)}),
              IsOk());
  const std::vector<uint64_t> eight = Iota(0, 8);
  ASSERT_THAT(store.PushRows("e", eight, std::vector<float>(16, 1.0f)), IsOk());
  const int64_t bytes = store.memory_bytes();
  // Three new rows and an old one: 11 rows, over the limit.
  const std::vector<uint64_t> over = {8, 9, 10, 0};
  auto refused = store.PushRows("e", over, std::vector<float>(8, 1.0f));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                HasSubstr("3 new rows of e would exceed its "
                                          "10 rows on shard 0 (holds 8")));
  EXPECT_EQ(RejectReasonOf(refused.status()), kReasonOutOfMemory);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(eight));
  EXPECT_EQ(store.memory_bytes(), bytes);
  std::vector<float> row(2);
  const uint64_t zero[] = {0};
  EXPECT_THAT(store.PullRows("e", zero, absl::MakeSpan(row)), IsOkAndHolds(1));
  EXPECT_THAT(row, ElementsAre(0.5f, 0.5f));
  // Up to the limit, and old rows after it, are fine; the limit is per table.
  const std::vector<uint64_t> two = {8, 9};
  EXPECT_THAT(store.PushRows("e", two, std::vector<float>(4, 1.0f)), IsOk());
  EXPECT_THAT(store.PushRows("e", eight, std::vector<float>(16, 1.0f)), IsOk());
  EXPECT_THAT(store.PushRows("f", eight, std::vector<float>(16, 1.0f)), IsOk());
  // So is a restore of one row more, with nothing restored.
  EXPECT_THAT(store.RestoreRow("e", 10, 1, {1.0f, 2.0f}),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(store.RestoreRow("e", 9, 1, {1.0f, 2.0f}), IsOk());
  auto footprint = store.Footprint("e");
  ASSERT_THAT(footprint, IsOk());
  EXPECT_EQ(footprint->rows, 10);
}

TEST(TensorStoreTest, MemoryCountsWhatTheChunksAndTheIndexAllocate) {
  TensorStore store(Options());  // 64 KiB chunks
  ASSERT_THAT(
      store.CreateTensors({ChunkedTable("e", 16, v1::OptimizerConfig::ADAM),
                           Dense("w", {3, 4})}),
      IsOk());
  EXPECT_EQ(store.memory_bytes(), 3 * 4 * 4);  // the dense part, no slots
  const std::vector<uint64_t> ids = Iota(0, 3000);
  ASSERT_THAT(store.PushRows("e", ids, GradFor(ids, 16, 0)), IsOk());
  auto f = store.Footprint("e");
  ASSERT_THAT(f, IsOk());
  // A row: id and step, 16 values, 2 x 16 slot floats.
  EXPECT_EQ(f->row_bytes, 8 + 8 + 16 * 4 * 3);
  EXPECT_EQ(f->rows, 3000);
  // Chunks of 4, 8, 16 and 32 KiB (19 + 39 + 78 + 157 rows of 208 bytes),
  // then of 64 KiB (315 rows): 9 more for the other 2707 rows.
  EXPECT_EQ(f->chunks, 4 + 9);
  EXPECT_GE(f->chunk_bytes, 3000 * f->row_bytes);
  EXPECT_LT(f->chunk_bytes, 3000 * f->row_bytes + (64 << 10));
  // 64 maps of 47 rows on average: capacity 63 or 127 each, 17 bytes a slot.
  EXPECT_GE(f->index_bytes, 3000 * 17);
  EXPECT_LE(f->index_bytes, 64 * (127 * 17 + 24));
  EXPECT_EQ(store.parameter_bytes(), 3 * 4 * 4 + 3000 * 16 * 4);
  EXPECT_EQ(store.slot_bytes(), 3000 * 16 * 4 * 2);
  EXPECT_EQ(store.memory_bytes(), 3 * 4 * 4 + f->chunk_bytes + f->index_bytes);
  EXPECT_EQ(store.table_overhead_bytes(),
            f->chunk_bytes + f->index_bytes - 3000 * 16 * 4 * 3);
  auto dense = store.Footprint("w");
  EXPECT_THAT(dense, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TensorStoreTest, BudgetAdmitsExactlyWhatNewRowsAllocate) {
  // The same two pushes, measured without a budget, then under a budget of
  // exactly what they take and of one byte less.
  const v1::TensorSpec spec =
      ChunkedTable("e", 8, v1::OptimizerConfig::ADAGRAD);
  const std::vector<uint64_t> first = Iota(0, 700, 3);
  const std::vector<uint64_t> second = Iota(300, 2300, 2);  // old and new
  int64_t after_first = 0, after_second = 0;
  {
    TensorStore store(Options());
    ASSERT_THAT(store.CreateTensors({spec}), IsOk());
    ASSERT_THAT(store.PushRows("e", first, GradFor(first, 8, 0)), IsOk());
    after_first = store.memory_bytes();
    ASSERT_THAT(store.PushRows("e", second, GradFor(second, 8, 1)), IsOk());
    after_second = store.memory_bytes();
  }
  for (int64_t budget : {after_second, after_second - 1}) {
    StoreOptions options = Options();
    options.max_memory_bytes = budget;
    TensorStore store(options);
    ASSERT_THAT(store.CreateTensors({spec}), IsOk());
    ASSERT_THAT(store.PushRows("e", first, GradFor(first, 8, 0)), IsOk());
    ASSERT_EQ(store.memory_bytes(), after_first);
    auto pushed = store.PushRows("e", second, GradFor(second, 8, 1));
    if (budget == after_second) {
      EXPECT_THAT(pushed, IsOk());
      EXPECT_EQ(store.memory_bytes(), after_second);
      continue;
    }
    EXPECT_THAT(pushed, StatusIs(absl::StatusCode::kResourceExhausted,
                                 HasSubstr("new rows of e needs")));
    EXPECT_EQ(RejectReasonOf(pushed.status()), kReasonOutOfMemory);
    EXPECT_EQ(store.memory_bytes(), after_first);
    // A push that creates no row is never refused.
    EXPECT_THAT(store.PushRows("e", first, GradFor(first, 8, 2)),
                IsOkAndHolds(::testing::Field(&PushResult::version, 2)));
  }
}

// ---------------------------------------------------------------------------
// Memory policies.

// Rows of dim 2 starting at 1.0, SGD with learning rate 0.5.
v1::TensorSpec PolicyTable(const std::string& name, v1::MemoryPolicy policy) {
  v1::TensorSpec spec = Table(name, 0, 2);
  *spec.mutable_memory_policy() = policy;
  return spec;
}

std::vector<float> Pull(TensorStore& store, const std::string& tensor,
                        std::vector<uint64_t> ids) {
  std::vector<float> out(ids.size() * 2);
  EXPECT_THAT(store.PullRows(tensor, ids, absl::MakeSpan(out)), IsOk());
  return out;
}

const TablePolicyStats& StatsOf(const std::vector<TablePolicyStats>& all,
                                const std::string& tensor) {
  for (const auto& s : all) {
    if (s.tensor == tensor) return s;
  }
  ADD_FAILURE() << "no stats for " << tensor;
  return all.front();
}

TEST(MemoryPolicyTest, ARowIsCreatedByItsKthPushOnly) {
  v1::MemoryPolicy policy;
  policy.set_admit_after_pushes(3);
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({PolicyTable("e", policy)}), IsOk());
  // Two pushes (one naming id 5 twice: counted once) create nothing.
  ASSERT_THAT(store.PushRows("e", {5, 5}, {1, 1, 1, 1}), IsOk());
  ASSERT_THAT(store.PushRows("e", {5}, {1, 1}), IsOk());
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre()));
  EXPECT_THAT(Pull(store, "e", {5}), ElementsAre(1, 1));
  EXPECT_EQ(store.parameter_bytes(), 0);
  // The third creates the row and applies its own gradient only.
  auto third = store.PushRows("e", {5, 6}, {2, 4, 1, 1});
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(third->version, 3);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(5)));
  EXPECT_THAT(Pull(store, "e", {5, 6}), ElementsAre(0, -1, 1, 1));
  const TablePolicyStats stats = StatsOf(store.PolicyStats(), "e");
  EXPECT_EQ(stats.rows, 1);
  EXPECT_EQ(stats.admissions, 1);
  EXPECT_EQ(stats.admission_drops, 3);  // id 5 twice, id 6 once
  EXPECT_EQ(stats.pull_hits, 1);
  EXPECT_EQ(stats.pull_misses, 2);
  // The sketch is counted: 4096 x 4 counters of 4 bytes.
  auto f = store.Footprint("e");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->sketch_bytes, 4096 * 4 * 4);
  EXPECT_EQ(store.memory_bytes(),
            f->chunk_bytes + f->index_bytes + f->sketch_bytes);
}

TEST(MemoryPolicyTest, RowsNotUpdatedForSomeStepsExpire) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_steps(3);
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({PolicyTable("e", policy)}), IsOk());
  ASSERT_THAT(store.PushRows("e", {1}, {1, 1}), IsOk());  // version 1
  ASSERT_THAT(store.PushRows("e", {2}, {1, 1}), IsOk());  // 2
  ASSERT_THAT(store.PushRows("e", {2}, {1, 1}), IsOk());  // 3
  EXPECT_EQ(store.ExpireRows(), 0);                       // row 1: 2 steps old
  ASSERT_THAT(store.PushRows("e", {2}, {1, 1}), IsOk());  // 4
  EXPECT_EQ(store.ExpireRows(), 1);                       // row 1: 3
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(2)));
  EXPECT_THAT(Pull(store, "e", {1}), ElementsAre(1, 1));  // initial again
  EXPECT_EQ(StatsOf(store.PolicyStats(), "e").expiries, 1);
  EXPECT_EQ(store.parameter_bytes(), 1 * 2 * 4);
  // The deletion reaches the flush; the deleted row is not among the rows.
  DirtySnapshot dirty;
  store.TakeDirty(&dirty);
  ASSERT_EQ(dirty.deleted_rows.size(), 1u);
  EXPECT_EQ(dirty.deleted_rows[0].tensor, "e");
  EXPECT_EQ(dirty.deleted_rows[0].id, 1u);
  ASSERT_EQ(dirty.rows.size(), 1u);
  EXPECT_EQ(dirty.rows[0].id, 2u);
  // A failed write puts the deletion back.
  store.MarkDirty(dirty);
  DirtySnapshot again;
  store.TakeDirty(&again);
  EXPECT_EQ(again.deleted_rows.size(), 1u);
}

TEST(MemoryPolicyTest, RowsNotUpdatedForSomeSecondsExpire) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_seconds(10);
  absl::Time now = absl::FromUnixSeconds(1000000);
  StoreOptions options = Options();
  options.clock = [&now] { return now; };
  TensorStore store(options);
  ASSERT_THAT(store.CreateTensors({PolicyTable("e", policy)}), IsOk());
  ASSERT_THAT(store.PushRows("e", {1, 2}, {1, 1, 1, 1}), IsOk());
  now += absl::Seconds(5);
  ASSERT_THAT(store.PushRows("e", {2}, {1, 1}), IsOk());
  now += absl::Seconds(4);
  EXPECT_EQ(store.ExpireRows(), 0);
  now += absl::Seconds(1);
  EXPECT_EQ(store.ExpireRows(), 1);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(2)));
  now += absl::Seconds(5);
  EXPECT_EQ(store.ExpireRows(), 1);
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre()));
  EXPECT_EQ(store.parameter_bytes(), 0);
  EXPECT_EQ(StatsOf(store.PolicyStats(), "e").expiries, 2);
}

TEST(MemoryPolicyTest, ARowLimitEvictsTheLeastRecentlyUpdatedIntoItsSlot) {
  v1::MemoryPolicy policy;
  policy.set_max_rows(4);
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({PolicyTable("e", policy)}), IsOk());
  for (uint64_t id = 0; id < 4; ++id) {
    ASSERT_THAT(store.PushRows("e", {id}, {1, 1}), IsOk());
  }
  ASSERT_THAT(store.PushRows("e", {0}, {1, 1}), IsOk());  // 1 is the oldest
  const void* slot_of_1 = store.RowAddressForTesting("e", 1);
  ASSERT_NE(slot_of_1, nullptr);
  const void* slot_of_2 = store.RowAddressForTesting("e", 2);
  const int64_t memory = store.memory_bytes();
  ASSERT_THAT(store.PushRows("e", {10}, {2, 2}), IsOk());
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(0, 2, 3, 10)));
  // The new row took the evicted row's slot; live rows did not move.
  EXPECT_EQ(store.RowAddressForTesting("e", 10), slot_of_1);
  EXPECT_EQ(store.RowAddressForTesting("e", 2), slot_of_2);
  EXPECT_THAT(Pull(store, "e", {10, 1}), ElementsAre(0, 0, 1, 1));
  EXPECT_EQ(StatsOf(store.PolicyStats(), "e").evictions, 1);
  EXPECT_EQ(store.parameter_bytes(), 4 * 2 * 4);
  auto f = store.Footprint("e");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->free_slots, 0);
  // No chunk grew: only the index (id 10's map) and the free list.
  EXPECT_EQ(f->chunks, 1);
  EXPECT_GE(store.memory_bytes(), memory + f->free_list_bytes);
  EXPECT_EQ(store.memory_bytes(),
            f->chunk_bytes + f->index_bytes + f->free_list_bytes);
  // Rows a push updates are never evicted by it: 5 distinct rows cannot fit.
  auto five = store.PushRows("e", {0, 2, 3, 10, 11}, std::vector<float>(10, 1));
  EXPECT_THAT(five, StatusIs(absl::StatusCode::kResourceExhausted,
                             HasSubstr("max_rows 4")));
  EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(0, 2, 3, 10)));
  EXPECT_THAT(Pull(store, "e", {10}), ElementsAre(0, 0));
}

TEST(MemoryPolicyTest, DeletedSlotsAreReusedAndMemoryStaysExact) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_steps(1);
  TensorStore store(SmallChunks());
  v1::TensorSpec spec = ChunkedTable("e", 4, v1::OptimizerConfig::ADAM);
  *spec.mutable_memory_policy() = policy;
  ASSERT_THAT(store.CreateTensors({spec}), IsOk());
  const std::vector<uint64_t> ids = Iota(0, 100);
  ASSERT_THAT(store.PushRows("e", ids, GradFor(ids, 4, 0)), IsOk());
  ASSERT_THAT(store.PushRows("e", {1000}, GradFor({1000}, 4, 0)), IsOk());
  auto before = store.Footprint("e");
  ASSERT_THAT(before, IsOk());
  EXPECT_EQ(store.ExpireRows(), 100);  // all but row 1000
  auto after = store.Footprint("e");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->rows, 1);
  EXPECT_EQ(after->free_slots, 100);
  EXPECT_EQ(after->chunk_bytes, before->chunk_bytes);  // nothing freed
  EXPECT_EQ(store.parameter_bytes(), 1 * 4 * 4);
  EXPECT_EQ(store.slot_bytes(), 1 * 4 * 4 * 2);
  EXPECT_EQ(store.memory_bytes(),
            after->chunk_bytes + after->index_bytes + after->free_list_bytes);
  // New rows fill the free slots: no new chunk.
  const std::vector<uint64_t> fresh = Iota(2000, 2100);
  ASSERT_THAT(store.PushRows("e", fresh, GradFor(fresh, 4, 1)), IsOk());
  auto refilled = store.Footprint("e");
  ASSERT_THAT(refilled, IsOk());
  EXPECT_EQ(refilled->rows, 101);
  EXPECT_EQ(refilled->free_slots, 0);
  EXPECT_EQ(refilled->chunks, before->chunks);
  EXPECT_EQ(refilled->chunk_bytes, before->chunk_bytes);
  EXPECT_EQ(store.parameter_bytes(), 101 * 4 * 4);
  EXPECT_EQ(store.memory_bytes(), refilled->chunk_bytes +
                                      refilled->index_bytes +
                                      refilled->free_list_bytes);
  // Values of the new rows are their own: initial values, one Adam step.
  TensorStore reference(SmallChunks());
  ASSERT_THAT(reference.CreateTensors({spec}), IsOk());
  ASSERT_THAT(reference.PushRows("e", fresh, GradFor(fresh, 4, 1)), IsOk());
  std::vector<float> got(fresh.size() * 4), want(fresh.size() * 4);
  ASSERT_THAT(store.PullRows("e", fresh, absl::MakeSpan(got)), IsOk());
  ASSERT_THAT(reference.PullRows("e", fresh, absl::MakeSpan(want)), IsOk());
  EXPECT_EQ(got, want);
}

TEST(MemoryPolicyTest, ATablesPushRefusedByAPolicyChangesNoTable) {
  v1::MemoryPolicy limited;
  limited.set_max_rows(2);
  v1::MemoryPolicy admitting;
  admitting.set_admit_after_pushes(2);
  TensorStore store(Options());
  ASSERT_THAT(store.CreateTensors({PolicyTable("a", limited), Table("b", 0, 2),
                                   PolicyTable("c", admitting)}),
              IsOk());
  ASSERT_THAT(store.PushRows("a", {1, 2}, {1, 1, 1, 1}), IsOk());
  const int64_t memory = store.memory_bytes();
  std::vector<float> three(6, 1.0f), one(2, 1.0f), bad(3, 1.0f);
  const std::vector<uint64_t> a_ids = {1, 2, 3}, b_ids = {7}, c_ids = {9};
  // "a" cannot hold 3 rows the push updates: "b" and "c" unchanged.
  std::vector<TableRowsUpdate> push = {
      {"b", b_ids, one}, {"c", c_ids, one}, {"a", a_ids, three}};
  EXPECT_THAT(store.PushTables(push),
              StatusIs(absl::StatusCode::kResourceExhausted));
  // A bad table after "c": "c"'s sketch does not count the push.
  std::vector<TableRowsUpdate> bad_push = {{"c", c_ids, one},
                                           {"b", b_ids, bad}};
  EXPECT_THAT(store.PushTables(bad_push),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.RowIds("a"), IsOkAndHolds(ElementsAre(1, 2)));
  EXPECT_THAT(store.RowIds("b"), IsOkAndHolds(ElementsAre()));
  EXPECT_EQ(store.memory_bytes(), memory);
  EXPECT_EQ(store.Describe("b")->version(), 0);
  EXPECT_EQ(store.Describe("c")->version(), 0);
  EXPECT_EQ(StatsOf(store.PolicyStats(), "c").admission_drops, 0);
  // So id 9's first real push is dropped, its second creates it.
  ASSERT_THAT(store.PushRows("c", c_ids, one), IsOk());
  EXPECT_THAT(store.RowIds("c"), IsOkAndHolds(ElementsAre()));
  ASSERT_THAT(store.PushRows("c", c_ids, one), IsOk());
  EXPECT_THAT(store.RowIds("c"), IsOkAndHolds(ElementsAre(9)));
}

TEST(MemoryPolicyTest, BoundedSweepsResumeAcrossChunksAndWrap) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_steps(1);
  TensorStore store(SmallChunks());  // a few rows a chunk
  v1::TensorSpec spec = ChunkedTable("e", 4, v1::OptimizerConfig::SGD);
  *spec.mutable_memory_policy() = policy;
  ASSERT_THAT(store.CreateTensors({spec}), IsOk());
  for (int round = 0; round < 2; ++round) {
    const std::vector<uint64_t> ids = Iota(round * 1000, round * 1000 + 300);
    ASSERT_THAT(store.PushRows("e", ids, GradFor(ids, 4, round)), IsOk());
    ASSERT_THAT(store.PushRows("e", {5000}, GradFor({5000}, 4, round)), IsOk());
    ASSERT_GT(store.Footprint("e")->chunks, 10);
    // 301 slots (round 1: reused ones), 50 a sweep: 7 sweeps see them all.
    int64_t expired = 0;
    for (int sweep = 0; sweep < 7; ++sweep) {
      const int64_t n = store.ExpireRows(50);
      EXPECT_LE(n, 50);
      expired += n;
    }
    EXPECT_EQ(expired, 300);
    EXPECT_THAT(store.RowIds("e"), IsOkAndHolds(ElementsAre(5000)));
  }
}

TEST(MemoryPolicyTest, TheAdmissionSketchCountsAgainstTheBudget) {
  v1::MemoryPolicy policy;
  policy.set_admit_after_pushes(2);
  policy.set_sketch_width(1024);
  policy.set_sketch_depth(2);  // 8 KiB
  StoreOptions options = Options();
  options.max_memory_bytes = 8 * 1024 - 1;
  TensorStore store(options);
  EXPECT_THAT(store.CreateTensors({PolicyTable("e", policy)}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("admission sketch")));
  options.max_memory_bytes = 8 * 1024;
  TensorStore fits(options);
  ASSERT_THAT(fits.CreateTensors({PolicyTable("e", policy)}), IsOk());
  EXPECT_EQ(fits.memory_bytes(), 8 * 1024);
}

TEST(MemoryPolicyTest, SweepsRacingPushesKeepMemoryExact) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_steps(3);
  policy.set_max_rows(200);
  TensorStore store(SmallChunks());
  v1::TensorSpec spec = ChunkedTable("e", 4, v1::OptimizerConfig::ADAGRAD);
  *spec.mutable_memory_policy() = policy;
  ASSERT_THAT(store.CreateTensors({spec}), IsOk());
  std::atomic<bool> done{false};
  std::thread sweeper([&] {
    while (!done.load()) store.ExpireRows(64);
  });
  for (int round = 0; round < 300; ++round) {
    const std::vector<uint64_t> ids = Iota(round * 7, round * 7 + 40);
    ASSERT_THAT(store.PushRows("e", ids, GradFor(ids, 4, round)), IsOk());
  }
  done = true;
  sweeper.join();
  auto f = store.Footprint("e");
  ASSERT_THAT(f, IsOk());
  EXPECT_LE(f->rows, 200);
  EXPECT_EQ(store.parameter_bytes(), f->rows * 4 * 4);
  EXPECT_EQ(store.slot_bytes(), f->rows * 4 * 4);
  EXPECT_EQ(store.memory_bytes(),
            f->chunk_bytes + f->index_bytes + f->free_list_bytes);
  const TablePolicyStats stats = StatsOf(store.PolicyStats(), "e");
  EXPECT_EQ(stats.admissions - stats.evictions - stats.expiries, f->rows);
}

// Scans `tensor` in batches of `batch` rows; every batch's values are checked
// against PullRows at once (nothing pushes in between).
std::vector<uint64_t> ScanAll(TensorStore& store, const std::string& tensor,
                              int64_t batch, int64_t dim, int* batches) {
  std::vector<uint64_t> ids;
  uint64_t cursor = 0;
  *batches = 0;
  for (;;) {
    auto got = store.ScanRows(tensor, cursor, batch);
    EXPECT_THAT(got, IsOk());
    if (!got.ok()) return ids;
    ++*batches;
    EXPECT_LE(static_cast<int64_t>(got->ids.size()), batch);
    EXPECT_EQ(got->values.size(), got->ids.size() * dim);
    std::vector<float> want(got->values.size());
    EXPECT_THAT(store.PullRows(tensor, got->ids, absl::MakeSpan(want)), IsOk());
    EXPECT_EQ(got->values, want);
    ids.insert(ids.end(), got->ids.begin(), got->ids.end());
    if (got->done) return ids;
    EXPECT_FALSE(got->ids.empty());
    cursor = got->next;
  }
}

TEST(TensorStoreTest, ScanRowsReturnsEveryRowOnceInBoundedBatches) {
  TensorStore store(SmallChunks());  // 256-byte chunks: a few rows each
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 3), Dense("d", {2, 2})}),
              IsOk());
  int batches = 0;
  auto empty = store.ScanRows("e", 0, 4);
  ASSERT_THAT(empty, IsOk());
  EXPECT_TRUE(empty->done);
  EXPECT_TRUE(empty->ids.empty());
  const std::vector<uint64_t> ids = Iota(0, 300, 7);
  ASSERT_THAT(store.PushRows("e", ids, std::vector<float>(ids.size() * 3, 1)),
              IsOk());
  for (int64_t batch : {1, 2, 5, 13, 1000}) {
    std::vector<uint64_t> got = ScanAll(store, "e", batch, 3, &batches);
    EXPECT_EQ(got, ids) << batch;  // creation order
    EXPECT_LE(batches, static_cast<int>(ids.size() / batch) + 2);
  }
  auto version = store.ScanRows("e", 0, 1);
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(version->version, 1);
  EXPECT_THAT(store.ScanRows("d", 0, 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store.ScanRows("nope", 0, 1),
              StatusIs(absl::StatusCode::kNotFound));
  // A cursor past the end is done, not a crash.
  auto past = store.ScanRows("e", ~uint64_t{0}, 4);
  ASSERT_THAT(past, IsOk());
  EXPECT_TRUE(past->done);
}

TEST(TensorStoreTest, ScanRowsSeesOldRowsOnceWhilePushesCreateRows) {
  TensorStore store(SmallChunks());
  ASSERT_THAT(store.CreateTensors({Table("e", 0, 2)}), IsOk());
  const std::vector<uint64_t> old = Iota(0, 100);
  ASSERT_THAT(store.PushRows("e", old, std::vector<float>(200, 1)), IsOk());
  std::vector<uint64_t> seen;
  uint64_t cursor = 0;
  uint64_t next_id = 1000;
  for (;;) {
    auto got = store.ScanRows("e", cursor, 3);
    ASSERT_THAT(got, IsOk());
    seen.insert(seen.end(), got->ids.begin(), got->ids.end());
    if (got->done) break;
    cursor = got->next;
    // Between batches: old rows updated, new rows created.
    const std::vector<uint64_t> mixed = {next_id, next_id + 1, 5, 50};
    next_id += 2;
    ASSERT_THAT(store.PushRows("e", mixed, std::vector<float>(8, 1)), IsOk());
  }
  std::vector<uint64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_TRUE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  for (uint64_t id : old) {
    EXPECT_TRUE(std::binary_search(sorted.begin(), sorted.end(), id)) << id;
  }
}

TEST(MemoryPolicyTest, ScanRowsSkipsDeletedRows) {
  v1::MemoryPolicy policy;
  policy.set_expire_after_steps(1);
  TensorStore store(SmallChunks());
  v1::TensorSpec spec = Table("e", 0, 3);
  *spec.mutable_memory_policy() = policy;
  ASSERT_THAT(store.CreateTensors({spec}), IsOk());
  const std::vector<uint64_t> odd = Iota(1, 60, 2), even = Iota(0, 60, 2);
  ASSERT_THAT(store.PushRows("e", odd, std::vector<float>(odd.size() * 3, 1)),
              IsOk());
  ASSERT_THAT(store.PushRows("e", even, std::vector<float>(even.size() * 3, 1)),
              IsOk());
  EXPECT_EQ(store.ExpireRows(), static_cast<int64_t>(odd.size()));
  int batches = 0;
  std::vector<uint64_t> got = ScanAll(store, "e", 4, 3, &batches);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, even);
}

}  // namespace
}  // namespace tessera
