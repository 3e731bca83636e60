#ifndef TESSERA_WORKER_DATA_PLANTED_CRITEO_H_
#define TESSERA_WORKER_DATA_PLANTED_CRITEO_H_

// Criteo-format data drawn from a known ("planted") logistic model, so a
// training run can be judged against the best possible AUC and log loss:
//
//   P(label = 1) = sigmoid(bias + sum_j a_j log1p(max(I_j, 0))
//                               + sum_k w_k(C_k))
//
// - I_j (j = 1..13): empty with a per-field probability (2% to 30%), else
//   floor(exp(mu_j + s_j z)) - 1 with z standard normal (so -1 occurs, as
//   in real Criteo data); an empty I_j contributes 0.
// - C_k (k = 1..26): the category of Zipf(zipf) rank r over field k's
//   vocabulary, written as 8 hex digits that are a hash of (seed, k, r); empty
//   with a per-field probability of 1% to 5%. Vocabularies grow
//   geometrically from 10 to `vocabulary` over the fields (in a scrambled
//   field order).
// - w_k(value) = sigma_k x Normal, drawn from a hash of (seed, k, value): any
//   string has a weight, "" (the empty cell) included, so the model scores
//   any Criteo line from its text alone.
// - a_j and sigma_k are drawn from the seed; bias is set so that about 25%
//   of the labels are 1.
//
// Everything is a pure function of the options: the same seed gives the same
// bytes. Line i of the train data is the same whatever the number of files.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/data/tabular.h"

namespace tessera {
namespace worker {

// Largest per-field vocabulary: the generator keeps a table per category.
inline constexpr int64_t kMaxPlantedVocabulary = int64_t{1} << 20;

struct PlantedCriteoOptions {
  int64_t train_lines = 1000000;  // >= 0
  int64_t test_lines = 100000;    // >= 1
  int files = 1;                  // train files, >= 1 and <= 100000
  bool gzip = false;              // write .tsv.gz (zlib level 1)
  uint64_t seed = 1;
  // The largest field's vocabulary, in [1, kMaxPlantedVocabulary].
  int64_t vocabulary = 1000;
  double zipf = 1.1;  // Zipf exponent of category popularity, in (0, 10]
};

// InvalidArgument naming the first option out of range.
absl::Status ValidatePlantedCriteoOptions(const PlantedCriteoOptions& options);

// The planted model and the line generator. Thread-safe (immutable).
class PlantedCriteoModel {
 public:
  // Requires valid options (InvalidArgument otherwise). Builds tables of
  // about 60 bytes per category; the bias calibration draws 20000 examples.
  static absl::StatusOr<std::unique_ptr<PlantedCriteoModel>> Create(
      const PlantedCriteoOptions& options);

  // Field k's (0-based) vocabulary size.
  int64_t vocabulary(int field) const { return fields_[field].vocabulary; }
  double bias() const { return bias_; }

  // w_k(value) for field k in [0, 26).
  double CategoryWeight(int field, absl::string_view value) const;

  // The planted P(label = 1) of a Criteo line (its label is ignored).
  // InvalidArgument for a line TabularSource would count as bad.
  absl::StatusOr<double> Probability(absl::string_view line) const;

  enum class Stream { kTrain, kTest };
  // Appends example `index` of `stream` as a Criteo line with '\n' to *out
  // and returns its planted probability; *label gets its label.
  double AppendLine(Stream stream, int64_t index, std::string* out,
                    int* label) const;

 private:
  struct Field {
    int64_t vocabulary = 0;
    double empty_probability = 0;
    std::vector<double> cdf;      // P(rank <= r + 1), r in [0, vocabulary)
    std::vector<char> hex;        // 8 characters per rank
    std::vector<double> weights;  // w_k of each rank's string
    double empty_weight = 0;      // w_k("")
    double sigma = 0;
  };
  struct Dense {
    double empty_probability = 0;
    double mu = 0;
    double s = 0;
    double weight = 0;  // a_j
  };

  explicit PlantedCriteoModel(const PlantedCriteoOptions& options);
  // The logit without the bias; the one summation used by both the
  // generator and Probability, so they agree to the last bit.
  static double Logit(double bias, const std::array<Dense, 13>& dense,
                      const int64_t* ints, const bool* present,
                      const double* category_weights);

  const PlantedCriteoOptions options_;
  std::array<Dense, kCriteoNumDense> dense_;
  std::array<Field, kCriteoNumCategorical> fields_;
  double bias_ = 0;
};

// What WritePlantedCriteo wrote, also in DIR/planted.json.
struct PlantedCriteoSummary {
  double best_auc = 0;       // ROC AUC of the planted probabilities, test file
  double best_log_loss = 0;  // their log loss on the test file
  double positive_rate = 0;  // fraction of label 1 in the test file
  double train_positive_rate = 0;
  double bias = 0;
  std::vector<int64_t> field_vocabularies;  // C1..C26
  std::vector<std::string> train_files;     // paths written
  std::string test_file;
  std::string json;  // the contents of planted.json
};

// Writes `out_dir`/train/part-NNNNN.tsv[.gz] (options.files of them, the
// train lines split evenly in order), `out_dir`/test.tsv[.gz] and
// `out_dir`/planted.json:
//   {"best_auc", "best_log_loss", "positive_rate", "train_positive_rate",
//    "train_lines", "test_lines", "seed", "files", "gzip", "vocabulary",
//    "zipf", "bias", "field_vocabularies": [26 sizes]}
// creating directories as needed and replacing files of those names.
// Memory: 16 bytes per test line (for the AUC). Errors: InvalidArgument for
// bad options; errno-derived codes for I/O errors.
absl::StatusOr<PlantedCriteoSummary> WritePlantedCriteo(
    const std::string& out_dir, const PlantedCriteoOptions& options);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_PLANTED_CRITEO_H_
