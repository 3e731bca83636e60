// Logistic regression trained (plain SGD, the test playing the parameter
// server) on synthetic click data recovers the generator's true weights.

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ps/common/status_matchers.h"
#include "worker/data/dataset.h"
#include "worker/data/synthetic_ctr.h"
#include "worker/model/local_sgd.h"
#include "worker/model/model.h"

namespace tessera {
namespace worker {
namespace {

double Correlation(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = x.size();
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

TEST(LogregSyntheticTest, TrainingRecoversTheTrueWeightsOfFrequentFeatures) {
  SyntheticCtrOptions data_options;
  data_options.num_examples = 20000;
  data_options.vocab_size = 1000;
  data_options.features_per_example = 8;
  data_options.zipf_exponent = 1.0;
  data_options.weight_stddev = 1.0;
  data_options.bias = -0.5;
  data_options.seed = 5;
  absl::StatusOr<std::unique_ptr<SyntheticCtrDataset>> dataset =
      SyntheticCtrDataset::Create(data_options);
  ASSERT_THAT(dataset, IsOk());

  ModelOptions options;
  options.name = "logreg";
  options.vocab_size = data_options.vocab_size;
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Create(options);
  ASSERT_THAT(model, IsOk());
  LocalSgd sgd(model->get());

  // Train on the first 4 of 5 partitions, hold out the last.
  BatchOptions batches;
  batches.batch_size = 100;
  batches.shuffle = true;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int partition = 0; partition < 4; ++partition) {
      batches.shuffle_seed = epoch;
      auto reader = PartitionReader<SparseBatch>::Create(dataset->get(),
                                                         partition, 5, batches);
      ASSERT_THAT(reader, IsOk());
      while (!reader->Done()) {
        absl::StatusOr<SparseBatch> batch = reader->Next();
        ASSERT_THAT(batch, IsOk());
        ASSERT_THAT(sgd.Step(*batch, 10.0f), IsOk());
      }
    }
  }

  std::vector<double> learned, truth;
  for (uint64_t id = 0; id < 100; ++id) {
    const std::vector<float> row = sgd.EmbeddingRow("embedding", id);
    ASSERT_EQ(row.size(), 1) << "feature " << id << " was never seen";
    learned.push_back(row[0]);
    truth.push_back((*dataset)->TrueWeight(id));
  }
  // Every example has 8 features of value 1, so a constant moved between the
  // weights and the bias changes nothing: compare by correlation.
  const double correlation = Correlation(learned, truth);
  RecordProperty("correlation", std::to_string(correlation));
  EXPECT_GT(correlation, 0.95);

  // Held-out accuracy close to the Bayes rate of the true model.
  BatchOptions holdout_batches;
  holdout_batches.batch_size = 4000;
  auto holdout = PartitionReader<SparseBatch>::Create(dataset->get(), 4, 5,
                                                      holdout_batches);
  ASSERT_THAT(holdout, IsOk());
  absl::StatusOr<SparseBatch> batch = holdout->Next();
  ASSERT_THAT(batch, IsOk());
  absl::StatusOr<EvalResult> eval = sgd.Evaluate(*batch);
  ASSERT_THAT(eval, IsOk());
  int64_t bayes_correct = 0;
  for (int i = 0; i < batch->batch_size; ++i) {
    const double p = (*dataset)->TrueProbability(
        absl::MakeConstSpan(batch->feature_ids.data() + batch->row_offsets[i],
                            batch->row_offsets[i + 1] - batch->row_offsets[i]));
    bayes_correct += (p > 0.5) == (batch->labels[i] > 0.5f);
  }
  RecordProperty("holdout_correct", std::to_string(eval->num_correct));
  RecordProperty("bayes_correct", std::to_string(bayes_correct));
  EXPECT_GT(eval->num_correct, 0.95 * bayes_correct)
      << "model " << eval->num_correct << " vs true model " << bayes_correct
      << " of " << batch->batch_size;
}

}  // namespace
}  // namespace worker
}  // namespace tessera
