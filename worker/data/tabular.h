#ifndef TESSERA_WORKER_DATA_TABULAR_H_
#define TESSERA_WORKER_DATA_TABULAR_H_

// The user's own tabular data: Criteo and CSV text files, plain or gzip,
// read as a stream in batches of dense features, categorical bags and labels.
// docs/data.md describes the formats for users.
//
// Category ids. Every categorical value (a string) becomes a 64-bit id:
//
//   CategoryId(field, value) =
//       Mix64(StableHash(value) + 0x9e3779b97f4a7c15 * (field + 1))
//
// with uint64 wraparound, `field` the 0-based index of the categorical column
// (Criteo: C1 is 0 ... C26 is 25; CSV: the position in CsvSchema.categorical)
// and, from ps/spec/placement.h,
//
//   Fnv1a64(s)    = h = 0xcbf29ce484222325; for each byte c of s:
//                   h ^= c; h *= 0x100000001b3
//   StableHash(s) = Mix64(Fnv1a64(s))
//   Mix64(x)      = x += 0x9e3779b97f4a7c15;
//                   x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
//                   x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
//                   x ^ (x >> 31)
//
// so the same string in two columns gets two unrelated ids. The value is the
// cell's bytes as they are (no trimming, no case folding; CSV quotes
// removed). An empty cell is the value "" (a category of its own), so every
// example has at least one id per field. Check values: tabular_test.cc,
// CategoryIdTest.KnownValues.
//
// Partitioning. A dataset is a list of files (a file, or the regular files
// of a directory sorted by name, hidden ones skipped). Partition p of P reads
// a pure function of that list and the files' sizes, so every worker computes
// the same split without talking to the others:
// - the plain files, concatenated in order, are cut at the byte offsets
//   floor(T * p / P) (T = their total size); partition p reads every line
//   that STARTS in [floor(T p / P), floor(T (p + 1) / P)), to its end;
// - a gzip file (name ending ".gz") cannot be split: it is one unit, read
//   whole by one partition. Gzip files go, largest (compressed) first, to the
//   partition with the fewest gzip bytes so far (the lowest index on a tie).
// Every line of the dataset is read by exactly one of the P partitions. With
// fewer gzip files than partitions some partitions get none: split big gzip
// data into many files.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tessera/v1/job.pb.h"
#include "worker/data/tabular_batch.h"

namespace tessera {
namespace worker {

// TabularBatch and ValidateTabularBatch: worker/data/tabular_batch.h.

// The id of categorical value `value` in field `field` (see the top of this
// file). `field` >= 0.
uint64_t CategoryId(int field, absl::string_view value);

// Criteo's layout: a 0/1 label, 13 integer fields I1..I13 and 26
// categorical fields C1..C26, tab-separated.
inline constexpr int kCriteoNumDense = 13;
inline constexpr int kCriteoNumCategorical = 26;

// A Criteo integer field's dense feature, DLRM's transform:
// log(1 + max(x, 0)); an empty field is 0.
float CriteoDenseValue(int64_t x);

// Longest line read, without its line ending; a longer line is a bad line
// and is skipped without being held in memory.
inline constexpr int64_t kMaxTabularLineBytes = 1 << 20;

enum class TabularFormat {
  // Criteo: `label<TAB>I1..I13<TAB>C1..C26`, exactly 40 fields. The label
  // is "0" or "1"; an integer field is empty or [-]digits fitting int64 (its
  // dense value is CriteoDenseValue); a categorical field is any string, an
  // empty one included. No header line.
  kCriteo,
  // CSV (RFC 4180 without line breaks inside quotes): the first line of
  // every file is a header naming the columns; TabularCsvOptions says which
  // are used. A cell may be double-quoted ("a, b" and "say ""hi""");
  // a quoted cell spanning lines is not supported (a bad line). Every line
  // must have as many cells as its file's header. The label is a finite
  // float (0/1 for binary cross-entropy, a class index for cross-entropy, a
  // real value for MSE); a dense cell is a finite float, empty = 0, taken
  // as is (no transform); a categorical cell is any string, empty = "".
  kCsv,
};

struct TabularCsvOptions {
  std::string label;                     // the label column, required
  std::vector<std::string> dense;        // dense columns, in feature order
  std::vector<std::string> categorical;  // categorical columns, field order
  // One byte, not '"', '\r' or '\n'.
  std::string delimiter = ",";
  // If not empty (and not containing the delimiter), a categorical cell
  // holds several values separated by this: its bag has one id per non-empty
  // value ("a|b" -> ids of "a" and "b"; "" and "|" -> the id of "").
  std::string multi_value_separator;
};

struct TabularOptions {
  TabularFormat format = TabularFormat::kCriteo;
  // A file, or a directory whose regular files (sorted by name, names
  // starting with '.' skipped, not recursive) are the dataset. A name
  // ending ".gz" is gzip-compressed.
  std::string path;
  TabularCsvOptions csv;  // kCsv only
};

// Which of a DatasetConfig's paths.
enum class DatasetSplit { kTrain, kTest };

// The options for `config` (format CRITEO or CSV) and its `path` (kTrain)
// or `test_path` (kTest). InvalidArgument for another format or an empty
// path.
absl::StatusOr<TabularOptions> TabularOptionsFromConfig(
    const v1::DatasetConfig& config, DatasetSplit split);

// Skipped lines of one partition.
struct BadLines {
  int64_t count = 0;
  // The first one as "file:line: reason" (line 1-based, counted from the
  // start of the file), empty when count is 0.
  std::string first;
};

// One piece of a partition: lines of files()[file] that start in
// [begin, end) (a plain file), or the whole file (gzip: begin 0, end its
// compressed size, whole true).
struct TabularUnit {
  int file = 0;
  int64_t begin = 0;
  int64_t end = 0;
  bool whole = false;
};

// Reads one partition front to back, in batches. Memory is bounded by the
// shuffle buffer (about shuffle_buffer x (4 num_dense + 8 ids + 100) bytes)
// plus about 1.5 MiB of line buffer, whatever the file sizes.
// Thread-compatible; independent of the TabularSource that opened it.
class TabularReader {
 public:
  virtual ~TabularReader() = default;

  // Fills *out (replacing its contents) with the next batch_size examples,
  // fewer in the last batch, and returns true; returns false once every
  // example has been returned (then *out has batch_size 0). Bad lines are
  // skipped: counted in stats() and, the first few of the partition, logged
  // as WARNING "file:line: reason". Errors: DataLoss for a corrupt or
  // truncated gzip file, errno-derived codes for I/O errors, NotFound for a
  // file removed since Open. After an error the reader is unusable.
  virtual absl::StatusOr<bool> Next(TabularBatch* out) = 0;

  // Lines skipped so far.
  virtual BadLines stats() const = 0;

  // Examples returned so far.
  virtual int64_t examples() const = 0;
};

// A tabular dataset: its file list, sizes and (CSV) header columns, checked
// once at Open. Thread-safe (immutable).
class TabularSource {
 public:
  struct ReadOptions {
    int batch_size = 256;  // >= 1
    // Examples are shuffled in a buffer of this many (>= 1, at most
    // kMaxShuffleBuffer): each example read replaces a uniformly chosen one
    // of the buffer, which is returned; at the end the buffer is returned in
    // random order. 1 = file order. The order is a pure function of (seed,
    // partition, the files); for another epoch's order, open the partition
    // again with another seed.
    int shuffle_buffer = 10000;
    uint64_t seed = 0;
  };
  static constexpr int kMaxShuffleBuffer = 10000000;

  // Lists and checks the files: NotFound if `path` does not exist or a
  // directory holds no data file; InvalidArgument for a bad CSV schema, or a
  // CSV file whose header lacks a named column, names one twice or is
  // missing (an empty file); DataLoss for an unreadable gzip header line;
  // errno-derived codes for I/O errors.
  static absl::StatusOr<std::unique_ptr<TabularSource>> Open(
      const TabularOptions& options);

  // Starts reading partition `partition` of `num_partitions` (see the top of
  // this file). InvalidArgument unless 0 <= partition < num_partitions and
  // the read options are in range. A partition may be empty.
  absl::StatusOr<std::unique_ptr<TabularReader>> OpenPartition(
      int partition, int num_partitions, const ReadOptions& options) const;

  // What partition `partition` of `num_partitions` reads, in reading order
  // (valid arguments required).
  std::vector<TabularUnit> PartitionUnits(int partition,
                                          int num_partitions) const;

  const TabularOptions& options() const { return options_; }
  // The data files, in order, and their sizes in bytes.
  const std::vector<std::string>& files() const { return files_; }
  const std::vector<int64_t>& file_sizes() const { return sizes_; }
  // Dense features per example and categorical fields (bags per example).
  int num_dense() const { return num_dense_; }
  int num_fields() const { return num_fields_; }

 private:
  TabularSource(const TabularOptions& options, std::vector<std::string> files,
                std::vector<int64_t> sizes,
                std::vector<std::vector<int>> csv_columns);

  const TabularOptions options_;
  const std::vector<std::string> files_;
  const std::vector<int64_t> sizes_;
  // kCsv: per file, the cell index of the label, then of each dense and
  // each categorical column; and the header's cell count at the end.
  const std::vector<std::vector<int>> csv_columns_;
  const int num_dense_;
  const int num_fields_;
};

// Opens `config`'s train or test data (TabularOptionsFromConfig, then
// TabularSource::Open).
absl::StatusOr<std::unique_ptr<TabularSource>> OpenTabularSource(
    const v1::DatasetConfig& config, DatasetSplit split);

// Read options from `config`: shuffle_buffer (0 = the default 10000;
// InvalidArgument if negative or above kMaxShuffleBuffer) and seed, with
// `batch_size` (InvalidArgument if < 1).
absl::StatusOr<TabularSource::ReadOptions> TabularReadOptionsFromConfig(
    const v1::DatasetConfig& config, int batch_size);

}  // namespace worker
}  // namespace tessera

#endif  // TESSERA_WORKER_DATA_TABULAR_H_
