// Rendering of `ferry status` (operator/status_view.hpp): no I/O.
#include "operator/status_view.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <map>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/replication.hpp"

namespace ferry::cli {
namespace json = boost::json;

namespace {

bool later(const model::ImageReplication& a, const model::ImageReplication& b) {
  auto ta = model::parse_rfc3339(a.spec.source.pushed_at);
  auto tb = model::parse_rfc3339(b.spec.source.pushed_at);
  return ta && tb && *ta > *tb;
}

// Whether `s`, written as a plain scalar, reads back as the same string.
bool reads_back_as_string(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return false;
  // YAML 1.1 timestamps (2026-12-01...), which PyYAML reads as dates.
  if (s.size() >= 8 && std::isdigit(static_cast<unsigned char>(s[0])) && s[4] == '-') return false;
  try {
    const YAML::Node n = YAML::Load(s);
    if (!n.IsScalar() || n.Scalar() != s) return false;
    bool b = false;
    if (YAML::convert<bool>::decode(n, b)) return false;
    double d = 0;
    return !YAML::convert<double>::decode(n, d);
  } catch (const YAML::Exception&) {
    return false;
  }
}

void emit(YAML::Emitter& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::object:
      out << YAML::BeginMap;
      for (const auto& kv : v.as_object()) {
        out << YAML::Key << std::string(kv.key()) << YAML::Value;
        emit(out, kv.value());
      }
      out << YAML::EndMap;
      break;
    case json::kind::array:
      out << YAML::BeginSeq;
      for (const auto& e : v.as_array()) emit(out, e);
      out << YAML::EndSeq;
      break;
    case json::kind::string: {
      const std::string s(v.as_string());
      // A plain scalar that a YAML reader would take for a number, bool or null is quoted
      // ("111111111111" is an account id, not a number).
      if (!reads_back_as_string(s)) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case json::kind::int64: out << v.as_int64(); break;
    case json::kind::uint64: out << v.as_uint64(); break;
    case json::kind::double_: out << v.as_double(); break;
    case json::kind::bool_: out << YAML::TrueFalseBool << v.as_bool(); break;
    case json::kind::null: out << YAML::Null; break;
  }
}

}  // namespace

std::vector<const model::ImageReplication*> select_records(const std::vector<model::ImageReplication>& records,
                                                           const StatusQuery& query) {
  const bool by_digest = query.image.starts_with("sha256:");
  std::map<std::string, const model::ImageReplication*> latest;  // by tag, or by digest when untagged
  for (const auto& r : records) {
    const auto& s = r.spec.source;
    if (s.repository_name != query.repository) continue;
    if (!query.image.empty() && (by_digest ? s.image_digest != query.image : s.image_tag != query.image)) continue;
    if (!query.registry_id.empty() && s.registry_id != query.registry_id) continue;
    if (!query.region.empty() && s.region != query.region) continue;
    const std::string key = by_digest || s.image_tag.empty() ? "@" + s.image_digest : ":" + s.image_tag;
    auto& slot = latest[query.image.empty() ? key : ""];
    if (!slot || later(r, *slot)) slot = &r;
  }
  std::vector<const model::ImageReplication*> out;
  for (const auto& [key, r] : latest) out.push_back(r);
  return out;
}

json::object image_status_json(const model::ImageReplication& record) {
  json::array statuses;
  for (const auto& st : record.status.replication_statuses) {
    json::object o{{"region", st.region}, {"registryId", st.registry_id}, {"status", st.status}};
    if (!st.failure_code.empty()) o["failureCode"] = st.failure_code;
    if (!st.message.empty()) o["message"] = st.message;
    statuses.push_back(std::move(o));
  }
  json::object image_id{{"imageDigest", record.spec.source.image_digest}};
  if (!record.spec.source.image_tag.empty()) image_id["imageTag"] = record.spec.source.image_tag;
  return json::object{{"repositoryName", record.spec.source.repository_name},
                      {"imageId", std::move(image_id)},
                      {"replicationStatuses", std::move(statuses)}};
}

json::value status_document(const std::vector<const model::ImageReplication*>& selected, const StatusQuery& query) {
  if (!query.image.empty() && selected.size() == 1) return image_status_json(*selected.front());
  json::array images;
  for (const auto* r : selected) {
    auto o = image_status_json(*r);
    o.erase("repositoryName");
    images.push_back(std::move(o));
  }
  return json::object{{"repositoryName", query.repository}, {"images", std::move(images)}};
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);  // an empty last cell leaves no padding behind
    out += line + "\n";
  }
  return out;
}

std::string status_table(const std::vector<const model::ImageReplication*>& selected) {
  std::vector<std::vector<std::string>> rows{{"REPOSITORY", "TAG", "DIGEST", "REGISTRY", "REGION", "STATUS", "FAILURE"}};
  for (const auto* r : selected) {
    const auto& s = r->spec.source;
    const std::string digest = s.image_digest.substr(0, std::string_view("sha256:").size() + 12);
    const std::string tag = s.image_tag.empty() ? "<none>" : s.image_tag;
    if (r->status.replication_statuses.empty()) rows.push_back({s.repository_name, tag, digest, "-", "-", "-", ""});
    for (const auto& st : r->status.replication_statuses) {
      rows.push_back({s.repository_name, tag, digest, st.registry_id, st.region, st.status, st.failure_code});
    }
  }
  return render_table(rows);
}

std::string to_yaml(const json::value& v) {
  YAML::Emitter out;
  emit(out, v);
  return std::string(out.c_str()) + "\n";
}

int status_exit_code(const std::vector<const model::ImageReplication*>& selected) {
  bool failed = false;
  for (const auto* r : selected) {
    for (const auto& st : r->status.replication_statuses) {
      if (st.status == model::kInProgress) return 3;
      failed = failed || st.status == model::kFailed;
    }
  }
  return failed ? 1 : 0;
}

}  // namespace ferry::cli
