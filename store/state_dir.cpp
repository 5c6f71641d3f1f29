// JSON files with atomic replacement for the standalone mode's records.
#include "store/state_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "reconcilers/model/failpoint.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/serialize.hpp"

namespace ferry::store {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string errno_text(const std::string& what, const fs::path& p) {
  return what + " " + p.string() + ": " + std::strerror(errno);
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool safe_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

template <typename T>
std::vector<T> load_kind(const fs::path& dir, std::vector<std::string>* problems) {
  std::vector<T> out;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto text = read_file(f);
    auto doc = text ? model::parse_json_text(*text) : std::unexpected(model::SyntaxError{"unreadable"});
    if (!doc) {
      if (problems) problems->push_back(f.string() + ": " + doc.error().message);
      continue;
    }
    auto parsed = model::parse_resource(*doc);
    if (!parsed.resource || !std::holds_alternative<T>(*parsed.resource)) {
      if (problems) {
        problems->push_back(f.string() + ": " +
                            (parsed.errors.empty() ? "unexpected kind" : model::to_string(parsed.errors[0])));
      }
      continue;
    }
    out.push_back(std::get<T>(std::move(*parsed.resource)));
  }
  return out;
}

}  // namespace

std::expected<void, std::string> write_file_atomically(const fs::path& path, std::string_view bytes) {
  const fs::path tmp = path.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return std::unexpected(errno_text("cannot create", tmp));
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto err = errno_text("cannot write", tmp);
      ::close(fd);
      return std::unexpected(err);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto err = errno_text("cannot fsync", tmp);
    ::close(fd);
    return std::unexpected(err);
  }
  ::close(fd);
  FERRY_FAILPOINT("file.write.before-rename");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return std::unexpected(errno_text("cannot rename to", path));
  FERRY_FAILPOINT("file.write.after-rename");
  int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

StateDir::StateDir(fs::path root) : root_(std::move(root)) {
  for (const char* sub : {"imagereplications", "repositories", "state", "retry"}) {
    std::error_code ec;
    fs::create_directories(root_ / sub, ec);
    if (ec) throw std::runtime_error("cannot create state directory " + (root_ / sub).string() + ": " + ec.message());
  }
}

std::expected<void, std::string> StateDir::save(const model::ImageReplication& record) {
  if (!safe_name(record.metadata.name)) return std::unexpected("unsafe record name \"" + record.metadata.name + "\"");
  return write_file_atomically(root_ / "imagereplications" / (record.metadata.name + ".json"),
                               json::serialize(model::to_json(record)));
}

std::expected<void, std::string> StateDir::save(const model::Repository& record) {
  if (!safe_name(record.metadata.name)) return std::unexpected("unsafe record name \"" + record.metadata.name + "\"");
  const auto path = root_ / "repositories" / (record.metadata.name + ".json");
  std::error_code ec;
  if (fs::exists(path, ec)) return {};  // recorded before; its settings stay as they are
  return write_file_atomically(path, json::serialize(model::to_json(record)));
}

std::expected<void, std::string> StateDir::remove_image_replication(const std::string& name) {
  if (!safe_name(name)) return std::unexpected("unsafe record name \"" + name + "\"");
  std::error_code ec;
  fs::remove(root_ / "imagereplications" / (name + ".json"), ec);
  if (ec) return std::unexpected("cannot remove record " + name + ": " + ec.message());
  return {};
}

std::optional<model::ImageReplication> StateDir::image_replication(const std::string& name) const {
  if (!safe_name(name)) return std::nullopt;
  auto text = read_file(root_ / "imagereplications" / (name + ".json"));
  if (!text) return std::nullopt;
  auto doc = model::parse_json_text(*text);
  if (!doc) return std::nullopt;
  auto parsed = model::parse_resource(*doc);
  if (!parsed.resource || !std::holds_alternative<model::ImageReplication>(*parsed.resource)) return std::nullopt;
  return std::get<model::ImageReplication>(std::move(*parsed.resource));
}

std::vector<model::ImageReplication> StateDir::image_replications(std::vector<std::string>* problems) const {
  return load_kind<model::ImageReplication>(root_ / "imagereplications", problems);
}

std::vector<model::Repository> StateDir::repositories(std::vector<std::string>* problems) const {
  return load_kind<model::Repository>(root_ / "repositories", problems);
}

std::expected<void, std::string> StateDir::save_state(const std::string& key, const json::value& v) {
  if (!safe_name(key)) return std::unexpected("unsafe state key \"" + key + "\"");
  return write_file_atomically(root_ / "state" / (key + ".json"), json::serialize(v));
}

std::expected<void, std::string> StateDir::request_retry(const std::string& name, const std::string& requested_at) {
  if (!safe_name(name)) return std::unexpected("unsafe record name \"" + name + "\"");
  return write_file_atomically(root_ / "retry" / (name + ".json"),
                               json::serialize(json::object{{"requestedAt", requested_at}}));
}

std::vector<std::pair<std::string, std::string>> StateDir::retry_requests() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_ / "retry", ec)) {
    const auto& p = e.path();
    if (p.extension() != ".json" || !safe_name(p.stem().string())) continue;  // *.json.tmp: being written
    auto text = read_file(p);
    if (!text) continue;
    auto doc = model::parse_json_text(*text);
    const json::value* at = doc && doc->is_object() ? doc->as_object().if_contains("requestedAt") : nullptr;
    if (at && at->is_string()) out.emplace_back(p.stem().string(), std::string(at->as_string()));
  }
  std::ranges::sort(out);
  return out;
}

void StateDir::remove_retry_request(const std::string& name) {
  if (!safe_name(name)) return;
  std::error_code ec;
  fs::remove(root_ / "retry" / (name + ".json"), ec);
}

std::expected<std::optional<json::value>, std::string> StateDir::load_state(const std::string& key) const {
  if (!safe_name(key)) return std::unexpected("unsafe state key \"" + key + "\"");
  const fs::path p = root_ / "state" / (key + ".json");
  std::error_code ec;
  if (!fs::exists(p, ec)) {
    if (ec) return std::unexpected(p.string() + ": " + ec.message());
    return std::nullopt;
  }
  auto text = read_file(p);
  if (!text) return std::unexpected(p.string() + ": cannot be read");
  auto doc = model::parse_json_text(*text);
  if (!doc) return std::unexpected(p.string() + ": " + doc.error().message);
  return *doc;
}

}  // namespace ferry::store
