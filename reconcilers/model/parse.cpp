// Reading Ferry resources from YAML and JSON documents into the model types.
#include "reconcilers/model/parse.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <set>

#include "reconcilers/model/secret_data.hpp"

namespace ferry::model {
namespace json = boost::json;

std::string to_string(const FieldError& e) {
  return e.path.empty() ? e.message : e.path + ": " + e.message;
}

// ---- YAML → JSON --------------------------------------------------------------

namespace {

json::value plain_scalar(const std::string& s) {
  static const std::regex kInt{R"([-+]?[0-9]+)"};
  static const std::regex kFloat{R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)"};
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (std::regex_match(s, kInt)) {
    std::int64_t v = 0;
    const char* b = s.data() + (s[0] == '+' ? 1 : 0);
    auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
    if (ec == std::errc{} && p == s.data() + s.size()) return v;
    return json::string(s);  // out of range: keep the text
  }
  if (std::regex_match(s, kFloat)) {
    // strtod, not stod: "1e999" is out of range, which stod throws for; keep the text then.
    errno = 0;
    const double v = std::strtod(s.c_str(), nullptr);
    if (errno == ERANGE) return json::string(s);
    return v;
  }
  return json::string(s);
}

json::value yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar: {
      const std::string& tag = n.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return json::string(n.Scalar());
      return plain_scalar(n.Scalar());
    }
    case YAML::NodeType::Sequence: {
      json::array a;
      for (const auto& item : n) a.push_back(yaml_to_json(item));
      return a;
    }
    case YAML::NodeType::Map: {
      json::object o;
      for (const auto& kv : n) {
        std::string key = kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
        o[key] = yaml_to_json(kv.second);
      }
      return o;
    }
  }
  return nullptr;
}

// yaml-cpp 0.7's LoadAll never returns on a token that no rule consumes, such as a stray ',' at
// the top level: it adds a null document for it, again and again (jbeder/yaml-cpp#1040, fixed
// after 0.8.0 by #1319). A first pass over the parser's events finds that case: a document that
// starts where the one before it started, so the parser did not move.
class DocumentStarts : public YAML::EventHandler {
 public:
  YAML::Mark start;
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::optional<SyntaxError> stuck_yaml_parser(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  int previous = -1;
  while (parser.HandleNextDocument(starts)) {
    if (starts.start.pos == previous) {
      const auto at = static_cast<std::size_t>(previous);
      return SyntaxError{at < text.size() ? "unexpected '" + text.substr(at, 1) + "'" : "unexpected end of stream",
                         starts.start.line + 1, starts.start.column + 1};
    }
    previous = starts.start.pos;
  }
  return std::nullopt;
}

void expand_lists(json::value v, std::vector<json::value>& out) {
  if (auto* o = v.if_object()) {
    auto kind = o->if_contains("kind");
    auto items = o->if_contains("items");
    if (kind && kind->is_string() && kind->as_string() == "List" && items && items->is_array()) {
      for (auto& item : items->as_array()) expand_lists(std::move(item), out);
      return;
    }
  }
  out.push_back(std::move(v));
}

}  // namespace

std::expected<json::value, SyntaxError> parse_json_text(std::string_view text) {
  json::stream_parser p;
  boost::system::error_code ec;
  std::size_t consumed = p.write_some(text.data(), text.size(), ec);
  if (!ec) p.finish(ec);
  if (ec) {
    int line = 1, column = 1;
    for (std::size_t i = 0; i < consumed && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return std::unexpected(SyntaxError{ec.message(), line, column});
  }
  return p.release();
}

std::expected<std::vector<json::value>, SyntaxError> load_documents(std::string_view text,
                                                                    Format format) {
  std::vector<json::value> docs;
  if (format == Format::Json) {
    auto v = parse_json_text(text);
    if (!v) return std::unexpected(v.error());
    expand_lists(std::move(*v), docs);
    return docs;
  }
  try {
    const std::string yaml(text);
    if (auto stuck = stuck_yaml_parser(yaml)) return std::unexpected(*stuck);
    for (const auto& node : YAML::LoadAll(yaml)) {
      if (node.IsNull() || !node.IsDefined()) continue;
      expand_lists(yaml_to_json(node), docs);
    }
  } catch (const YAML::Exception& e) {
    return std::unexpected(SyntaxError{e.msg, e.mark.line + 1, e.mark.column + 1});
  }
  return docs;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  if (s == "0") return std::chrono::milliseconds{0};
  if (s.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + s.size(), n);
    if (ec != std::errc{} || p == s.data() + i) return std::nullopt;
    i = static_cast<std::size_t>(p - s.data());
    std::int64_t unit = 0;
    if (s.substr(i, 2) == "ms") {
      unit = 1;
      i += 2;
    } else if (i < s.size() && s[i] == 's') {
      unit = 1000;
      ++i;
    } else if (i < s.size() && s[i] == 'm') {
      unit = 60'000;
      ++i;
    } else if (i < s.size() && s[i] == 'h') {
      unit = 3'600'000;
      ++i;
    } else {
      return std::nullopt;
    }
    // Each term and the running sum must fit: "2562047788015h2562047788015h" overflowed.
    if (n > (INT64_MAX - total) / unit) return std::nullopt;
    total += n * unit;
  }
  return std::chrono::milliseconds{total};
}

std::optional<std::uint64_t> parse_byte_quantity(std::string_view s) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || p == s.data() || s.front() < '0' || s.front() > '9') return std::nullopt;
  const std::string_view suffix(p, static_cast<std::size_t>(s.data() + s.size() - p));
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},
      {"k", 1000},
      {"M", 1000'000},
      {"G", 1000'000'000},
      {"T", 1000'000'000'000},
      {"Ki", 1ULL << 10},
      {"Mi", 1ULL << 20},
      {"Gi", 1ULL << 30},
      {"Ti", 1ULL << 40}};
  for (const auto& [name, unit] : kUnits) {
    if (suffix != name) continue;
    if (n > (std::uint64_t{1} << 63) / unit) return std::nullopt;
    return n * unit;
  }
  return std::nullopt;
}

// ---- object reading -------------------------------------------------------------

namespace {

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

const char* type_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "a list";
    case json::kind::object: return "an object";
  }
  return "a value";
}

// Reads the fields of one JSON object, recording wrong types, missing required fields and,
// on finish(), every field it was not asked for.
class ObjectReader {
 public:
  ObjectReader(const json::value* v, std::string path, FieldErrors& errors)
      : path_(std::move(path)), errors_(errors) {
    if (v == nullptr || v->is_null()) return;
    if (!v->is_object()) {
      errors_.push_back({path_, std::string("must be an object, got ") + type_name(*v)});
      return;
    }
    object_ = &v->as_object();
  }
  ObjectReader(const ObjectReader&) = delete;
  ~ObjectReader() { finish(); }

  bool present() const { return object_ != nullptr; }
  const std::string& path() const { return path_; }

  const json::value* raw(std::string_view key, bool required = false) {
    seen_.insert(std::string(key));
    const json::value* v = object_ ? object_->if_contains(key) : nullptr;
    if (v && v->is_null()) v = nullptr;
    if (!v && required && object_) errors_.push_back({join(path_, key), "required"});
    return v;
  }

  std::optional<std::string> str(std::string_view key, bool required = false) {
    const json::value* v = raw(key, required);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      errors_.push_back({join(path_, key), std::string("must be a string, got ") + type_name(*v) +
                                               (v->is_int64() ? " (quote it)" : "")});
      return std::nullopt;
    }
    if (required && v->as_string().empty()) {
      errors_.push_back({join(path_, key), "required, must not be empty"});
      return std::nullopt;
    }
    return std::string(v->as_string());
  }

  std::optional<bool> boolean(std::string_view key) {
    const json::value* v = raw(key);
    if (!v) return std::nullopt;
    if (!v->is_bool()) {
      errors_.push_back({join(path_, key), std::string("must be true or false, got ") + type_name(*v)});
      return std::nullopt;
    }
    return v->as_bool();
  }

  std::optional<std::int64_t> integer(std::string_view key) {
    const json::value* v = raw(key);
    if (!v) return std::nullopt;
    if (!v->is_int64()) {
      errors_.push_back({join(path_, key), std::string("must be an integer, got ") + type_name(*v)});
      return std::nullopt;
    }
    return v->as_int64();
  }

  // The list under `key`; null when absent or not a list (the latter recorded).
  const json::array* list(std::string_view key, bool required = false) {
    const json::value* v = raw(key, required);
    if (!v) return nullptr;
    if (!v->is_array()) {
      errors_.push_back({join(path_, key), std::string("must be a list, got ") + type_name(*v)});
      return nullptr;
    }
    return &v->as_array();
  }

  std::map<std::string, std::string> string_map(std::string_view key) {
    std::map<std::string, std::string> out;
    const json::value* v = raw(key);
    if (!v) return out;
    if (!v->is_object()) {
      errors_.push_back({join(path_, key), std::string("must be an object, got ") + type_name(*v)});
      return out;
    }
    for (const auto& kv : v->as_object()) {
      if (kv.value().is_string()) {
        out[std::string(kv.key())] = std::string(kv.value().as_string());
      } else {
        errors_.push_back({join(join(path_, key), kv.key()),
                           std::string("must be a string, got ") + type_name(kv.value())});
      }
    }
    return out;
  }

  // Marks keys that are read elsewhere (or deliberately ignored).
  void allow(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) seen_.insert(std::string(k));
  }

  void finish() {
    if (!object_ || finished_) return;
    finished_ = true;
    for (const auto& kv : *object_) {
      if (!seen_.contains(std::string(kv.key()))) {
        errors_.push_back({join(path_, kv.key()), "unknown field"});
      }
    }
  }

 private:
  const json::object* object_ = nullptr;
  std::string path_;
  FieldErrors& errors_;
  std::set<std::string> seen_;
  bool finished_ = false;
};

std::string sub(const ObjectReader& r, std::string_view key) { return join(r.path(), key); }

ObjectMeta read_metadata(const json::value* v, FieldErrors& errors) {
  ObjectMeta m;
  ObjectReader r(v, "metadata", errors);
  if (!r.present()) {
    errors.push_back({"metadata.name", "required"});
    return m;
  }
  m.name = r.str("name", true).value_or("");
  m.namespace_ = r.str("namespace").value_or("");
  m.uid = r.str("uid").value_or("");
  m.resource_version = r.str("resourceVersion").value_or("");
  m.generation = r.integer("generation").value_or(0);
  m.creation_timestamp = r.str("creationTimestamp").value_or("");
  m.labels = r.string_map("labels");
  m.annotations = r.string_map("annotations");
  // Server-populated bookkeeping that Ferry does not interpret.
  r.allow({"managedFields", "finalizers", "ownerReferences", "generateName", "deletionTimestamp",
           "deletionGracePeriodSeconds", "selfLink"});
  return m;
}

std::optional<SecretRef> read_secret_ref(ObjectReader& parent, std::string_view key,
                                         FieldErrors& errors) {
  ObjectReader r(parent.raw(key), sub(parent, key), errors);
  if (!r.present()) return std::nullopt;
  SecretRef ref;
  ref.namespace_ = r.str("namespace", true).value_or("");
  ref.name = r.str("name", true).value_or("");
  return ref;
}

// WILDCARD tag filters under `key` (S18 tagFilters, S16 imageTagMutabilityExclusionFilters).
std::vector<TagFilter> read_tag_filters(ObjectReader& parent, std::string_view key, FieldErrors& errors) {
  std::vector<TagFilter> out;
  const json::array* filters = parent.list(key);
  if (!filters) return out;
  for (std::size_t j = 0; j < filters->size(); ++j) {
    ObjectReader f(&(*filters)[j], index_path(sub(parent, key), j), errors);
    if (!f.present()) {
      errors.push_back({f.path(), "must be an object with filter and filterType"});
      continue;
    }
    TagFilter filter;
    filter.filter = f.str("filter", true).value_or("");
    filter.filter_type = f.str("filterType").value_or("WILDCARD");
    out.push_back(std::move(filter));
  }
  return out;
}

// ECR's repository filters: [{filter, filterType PREFIX_MATCH}].
std::vector<RepositoryFilter> read_repository_filters(ObjectReader& parent, FieldErrors& errors) {
  std::vector<RepositoryFilter> out;
  const json::array* filters = parent.list("repositoryFilters");
  if (!filters) return out;
  for (std::size_t j = 0; j < filters->size(); ++j) {
    ObjectReader f(&(*filters)[j], index_path(sub(parent, "repositoryFilters"), j), errors);
    if (!f.present()) {
      errors.push_back({f.path(), "must be an object with filter and filterType"});
      continue;
    }
    RepositoryFilter filter;
    filter.filter = f.str("filter", true).value_or("");
    filter.filter_type = f.str("filterType").value_or("PREFIX_MATCH");
    out.push_back(std::move(filter));
  }
  return out;
}

// ECR's resource tags: [{Key, Value}].
std::vector<ResourceTag> read_resource_tags(ObjectReader& parent, std::string_view key, FieldErrors& errors) {
  std::vector<ResourceTag> out;
  const json::array* tags = parent.list(key);
  if (!tags) return out;
  for (std::size_t j = 0; j < tags->size(); ++j) {
    ObjectReader t(&(*tags)[j], index_path(sub(parent, key), j), errors);
    if (!t.present()) {
      errors.push_back({t.path(), "must be an object with Key and Value"});
      continue;
    }
    ResourceTag tag;
    tag.key = t.str("Key", true).value_or("");
    tag.value = t.str("Value").value_or("");
    out.push_back(std::move(tag));
  }
  return out;
}

RegistryKey read_registry_key(const json::value& v, const std::string& path, FieldErrors& errors) {
  ObjectReader r(&v, path, errors);
  RegistryKey k;
  if (!r.present()) {
    errors.push_back({path, "must be an object with region and registryId"});
    return k;
  }
  k.region = r.str("region", true).value_or("");
  k.registry_id = r.str("registryId", true).value_or("");
  return k;
}

std::vector<RegistryKey> read_destinations(ObjectReader& parent, bool required,
                                           FieldErrors& errors) {
  std::vector<RegistryKey> out;
  if (const json::array* a = parent.list("destinations", required)) {
    for (std::size_t i = 0; i < a->size(); ++i) {
      out.push_back(read_registry_key((*a)[i], index_path(sub(parent, "destinations"), i), errors));
    }
  }
  return out;
}

void read_common_status(ObjectReader& r, CommonStatus& s, FieldErrors& errors) {
  s.observed_generation = r.integer("observedGeneration").value_or(0);
  if (const json::array* a = r.list("conditions")) {
    for (std::size_t i = 0; i < a->size(); ++i) {
      ObjectReader c(&(*a)[i], index_path(sub(r, "conditions"), i), errors);
      Condition cond;
      cond.type = c.str("type", true).value_or("");
      cond.status = c.str("status", true).value_or("");
      cond.reason = c.str("reason").value_or("");
      cond.message = c.str("message").value_or("");
      cond.last_transition_time = c.str("lastTransitionTime").value_or("");
      cond.observed_generation = c.integer("observedGeneration").value_or(0);
      s.conditions.push_back(std::move(cond));
    }
  }
}

// ---- per kind --------------------------------------------------------------------

Registry read_registry(ObjectReader& top, FieldErrors& errors) {
  Registry reg;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    auto& spec = reg.spec;
    spec.registry_id = s.str("registryId", true).value_or("");
    spec.region = s.str("region", true).value_or("");
    if (auto p = s.str("partition")) {
      if (auto parsed = parse_partition(*p)) {
        spec.partition = *parsed;
        spec.partition_explicit = true;
      } else {
        errors.push_back({"spec.partition",
                          "\"" + *p + "\" is not a partition; must be aws, aws-cn or aws-us-gov"});
      }
    }
    if (!spec.partition_explicit) spec.partition = partition_for_region(spec.region);
    if (auto t = s.str("type")) {
      if (*t == "oci") {
        spec.type = RegistryType::Oci;
      } else if (*t == "ecr") {
        spec.type = RegistryType::Ecr;
      } else {
        errors.push_back({"spec.type", "\"" + *t + "\" is not a registry type; must be oci or ecr"});
      }
    }
    // An ECR registry's data plane has a known address; any other registry must say where it is.
    spec.endpoint = s.str("endpoint", spec.type != RegistryType::Ecr).value_or("");
    if (spec.endpoint.empty() && spec.type == RegistryType::Ecr) spec.endpoint = default_ecr_endpoint(spec);
    {
      ObjectReader ecr(s.raw("ecr"), "spec.ecr", errors);
      if (ecr.present() && spec.type != RegistryType::Ecr) {
        errors.push_back({"spec.ecr", "only allowed with type: ecr"});
      }
      spec.ecr_api_endpoint = ecr.str("apiEndpoint").value_or("");
      spec.ecr_events_queue_url = ecr.str("eventsQueueUrl").value_or("");
      spec.sts_endpoint = ecr.str("stsEndpoint").value_or("");
    }
    spec.enabled = s.boolean("enabled").value_or(true);
    spec.credentials_secret_ref = read_secret_ref(s, "credentialsSecretRef", errors);
    {
      ObjectReader tls(s.raw("tls"), "spec.tls", errors);
      spec.tls_insecure_skip_verify = tls.boolean("insecureSkipVerify").value_or(false);
      spec.tls_ca_secret_ref = read_secret_ref(tls, "caSecretRef", errors);
    }
    {
      ObjectReader n(s.raw("notifications"), "spec.notifications", errors);
      spec.notifications_token_secret_ref = read_secret_ref(n, "tokenSecretRef", errors);
    }
    {
      ObjectReader l(s.raw("limits"), "spec.limits", errors);
      if (const json::value* v = l.raw("requestsPerSecond")) {
        if (v->is_number()) {
          spec.limits.requests_per_second = v->to_number<double>();
        } else {
          errors.push_back({"spec.limits.requestsPerSecond",
                            std::string("must be a number, got ") + type_name(*v)});
        }
      }
      if (const json::value* v = l.raw("bytesPerSecond")) {
        std::optional<std::uint64_t> n;
        if (v->is_string()) n = parse_byte_quantity(v->as_string());
        if (v->is_int64() && v->as_int64() >= 0) n = static_cast<std::uint64_t>(v->as_int64());
        if (n) {
          spec.limits.bytes_per_second = *n;
        } else if (v->is_string()) {
          errors.push_back({"spec.limits.bytesPerSecond",
                            "\"" + std::string(v->as_string()) +
                                "\" is not a byte count; use e.g. 10485760, 10Mi or 100M"});
        } else {
          errors.push_back({"spec.limits.bytesPerSecond",
                            std::string("must be a byte count such as 10485760, 10Mi or 100M, got ") +
                                type_name(*v)});
        }
      }
      spec.limits.max_concurrent_copies = l.integer("maxConcurrentCopies").value_or(0);
    }
    if (auto d = s.str("pollInterval")) {
      if (auto ms = parse_duration(*d)) {
        spec.poll_interval = *ms;
      } else {
        errors.push_back({"spec.pollInterval", "\"" + *d +
                                                   "\" is not a duration; use e.g. 30s, 5m, 1h30m "
                                                   "or 0 to disable polling"});
      }
    }
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, reg.status, errors);
  reg.status.last_polled_at = st.str("lastPolledAt").value_or("");
  return reg;
}

ReplicationConfig read_replication_config(ObjectReader& top, FieldErrors& errors) {
  ReplicationConfig rc;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    rc.spec.registry_id = s.str("registryId", true).value_or("");
    rc.spec.region = s.str("region", true).value_or("");
    if (const json::array* rules = s.list("rules")) {
      for (std::size_t i = 0; i < rules->size(); ++i) {
        ObjectReader r(&(*rules)[i], index_path("spec.rules", i), errors);
        if (!r.present()) {
          errors.push_back({index_path("spec.rules", i), "must be an object"});
          continue;
        }
        ReplicationRule rule;
        rule.destinations = read_destinations(r, true, errors);
        rule.repository_filters = read_repository_filters(r, errors);
        rule.tag_filters = read_tag_filters(r, "tagFilters", errors);
        rc.spec.rules.push_back(std::move(rule));
      }
    }
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, rc.status, errors);
  rc.status.effective_since = st.str("effectiveSince").value_or("");
  if (const json::array* a = st.list("destinations")) {
    for (std::size_t i = 0; i < a->size(); ++i) {
      ObjectReader d(&(*a)[i], index_path("status.destinations", i), errors);
      DestinationState ds;
      ds.region = d.str("region").value_or("");
      ds.registry_id = d.str("registryId").value_or("");
      ds.state = d.str("state").value_or("");
      ds.message = d.str("message").value_or("");
      ds.effective_since = d.str("effectiveSince").value_or("");
      rc.status.destinations.push_back(std::move(ds));
    }
  }
  return rc;
}

RegistryPolicy read_registry_policy(ObjectReader& top, FieldErrors& errors) {
  RegistryPolicy rp;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    rp.spec.registry_id = s.str("registryId", true).value_or("");
    rp.spec.region = s.str("region", true).value_or("");
    if (const json::value* p = s.raw("policy", true)) rp.spec.policy = *p;
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, rp.status, errors);
  return rp;
}

Repository read_repository(ObjectReader& top, FieldErrors& errors) {
  Repository repo;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    auto& spec = repo.spec;
    spec.registry_id = s.str("registryId", true).value_or("");
    spec.region = s.str("region", true).value_or("");
    spec.repository_name = s.str("repositoryName", true).value_or("");
    spec.image_tag_mutability = s.str("imageTagMutability").value_or("MUTABLE");
    spec.image_tag_mutability_exclusion_filters = read_tag_filters(s, "imageTagMutabilityExclusionFilters", errors);
    {
      ObjectReader scan(s.raw("imageScanningConfiguration"), "spec.imageScanningConfiguration",
                        errors);
      spec.scan_on_push = scan.boolean("scanOnPush").value_or(false);
    }
    {
      ObjectReader enc(s.raw("encryptionConfiguration"), "spec.encryptionConfiguration", errors);
      spec.encryption_type = enc.str("encryptionType").value_or("AES256");
      spec.kms_key = enc.str("kmsKey").value_or("");
    }
    spec.resource_tags = read_resource_tags(s, "resourceTags", errors);
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, repo.status, errors);
  repo.status.created_by = st.str("createdBy").value_or("");
  repo.status.created_at = st.str("createdAt").value_or("");
  repo.status.template_name = st.str("template").value_or("");
  {
    ObjectReader src(st.raw("source"), "status.source", errors);
    if (src.present()) {
      RegistryKey k;
      k.registry_id = src.str("registryId").value_or("");
      k.region = src.str("region").value_or("");
      repo.status.source_registry = k;
      repo.status.source_repository_name = src.str("repositoryName").value_or("");
    }
  }
  return repo;
}

RepositoryCreationTemplate read_repository_creation_template(ObjectReader& top, FieldErrors& errors) {
  RepositoryCreationTemplate t;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    auto& spec = t.spec;
    spec.registry_id = s.str("registryId", true).value_or("");
    spec.region = s.str("region", true).value_or("");
    spec.prefix = s.str("prefix", true).value_or("");
    spec.description = s.str("description").value_or("");
    if (const json::array* a = s.list("appliedFor")) {
      spec.applied_for.clear();
      for (std::size_t i = 0; i < a->size(); ++i) {
        if ((*a)[i].is_string()) {
          spec.applied_for.emplace_back((*a)[i].as_string());
        } else {
          errors.push_back({index_path("spec.appliedFor", i), std::string("must be a string, got ") +
                                                                   type_name((*a)[i])});
        }
      }
    }
    spec.image_tag_mutability = s.str("imageTagMutability").value_or("MUTABLE");
    spec.image_tag_mutability_exclusion_filters = read_tag_filters(s, "imageTagMutabilityExclusionFilters", errors);
    {
      ObjectReader enc(s.raw("encryptionConfiguration"), "spec.encryptionConfiguration", errors);
      spec.encryption_type = enc.str("encryptionType").value_or("AES256");
      spec.kms_key = enc.str("kmsKey").value_or("");
    }
    spec.resource_tags = read_resource_tags(s, "resourceTags", errors);
    if (const json::value* p = s.raw("repositoryPolicy")) spec.repository_policy = *p;
    if (const json::value* p = s.raw("lifecyclePolicy")) spec.lifecycle_policy = *p;
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, t.status, errors);
  return t;
}

ReplicationBackfill read_replication_backfill(ObjectReader& top, FieldErrors& errors) {
  ReplicationBackfill b;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    b.spec.registry_id = s.str("registryId", true).value_or("");
    b.spec.region = s.str("region", true).value_or("");
    if (const json::value* d = s.raw("destination", true)) b.spec.destination = read_registry_key(*d, "spec.destination", errors);
    b.spec.repository_filters = read_repository_filters(s, errors);
    b.spec.stop = s.boolean("stop").value_or(false);
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, b.status, errors);
  b.status.phase = st.str("phase").value_or("");
  b.status.started_at = st.str("startedAt").value_or("");
  b.status.completed_at = st.str("completedAt").value_or("");
  b.status.message = st.str("message").value_or("");
  {
    ObjectReader im(st.raw("images"), "status.images", errors);
    b.status.images.total = im.integer("total").value_or(0);
    b.status.images.replicated = im.integer("replicated").value_or(0);
    b.status.images.skipped = im.integer("skipped").value_or(0);
    b.status.images.failed = im.integer("failed").value_or(0);
  }
  return b;
}

ImageReplication read_image_replication(ObjectReader& top, FieldErrors& errors) {
  ImageReplication ir;
  {
    ObjectReader s(top.raw("spec", true), "spec", errors);
    {
      ObjectReader src(s.raw("source", true), "spec.source", errors);
      auto& so = ir.spec.source;
      so.registry_id = src.str("registryId", true).value_or("");
      so.region = src.str("region", true).value_or("");
      so.repository_name = src.str("repositoryName", true).value_or("");
      so.image_digest = src.str("imageDigest", true).value_or("");
      so.image_tag = src.str("imageTag").value_or("");
      so.pushed_at = src.str("pushedAt").value_or("");
    }
    ir.spec.destinations = read_destinations(s, false, errors);
  }
  ObjectReader st(top.raw("status"), "status", errors);
  read_common_status(st, ir.status, errors);
  ir.status.digest_short = st.str("digestShort").value_or("");
  ir.status.progress = st.str("progress").value_or("");
  ir.status.last_handled_retry_at = st.str("lastHandledRetryAt").value_or("");
  if (const json::array* a = st.list("replicationStatuses")) {
    for (std::size_t i = 0; i < a->size(); ++i) {
      ObjectReader d(&(*a)[i], index_path("status.replicationStatuses", i), errors);
      ReplicationStatus rs;
      rs.region = d.str("region", true).value_or("");
      rs.registry_id = d.str("registryId", true).value_or("");
      rs.status = d.str("status", true).value_or("");
      rs.failure_code = d.str("failureCode").value_or("");
      rs.message = d.str("message").value_or("");
      rs.started_at = d.str("startedAt").value_or("");
      rs.completed_at = d.str("completedAt").value_or("");
      rs.authorized_by = d.str("authorizedBy").value_or("");
      rs.next_attempt_at = d.str("nextAttemptAt").value_or("");
      rs.tagged = d.boolean("tagged").value_or(true);
      ir.status.replication_statuses.push_back(std::move(rs));
    }
  }
  return ir;
}

Secret read_secret(ObjectReader& top, FieldErrors& errors) {
  Secret secret;
  secret.type = top.str("type").value_or("Opaque");
  for (auto& [k, v] : top.string_map("data")) {
    if (auto decoded = decode_base64(v)) {
      secret.data[k] = std::move(*decoded);
    } else {
      errors.push_back({"data." + k, "is not valid base64"});
    }
  }
  for (auto& [k, v] : top.string_map("stringData")) secret.data[k] = v;
  top.allow({"immutable"});
  return secret;
}

}  // namespace

ParsedResource parse_resource(const json::value& object) {
  ParsedResource out;
  FieldErrors& errors = out.errors;
  if (!object.is_object()) {
    errors.push_back({"", std::string("a resource must be an object, got ") + type_name(object)});
    return out;
  }
  {
    // Objects of other API groups (a GitOps repository holds more than Ferry's resources) are
    // not Ferry's to judge: they are skipped, not rejected. A misspelt ferry.dev version is not.
    const auto& o = object.as_object();
    const auto* av = o.if_contains("apiVersion");
    const auto* k = o.if_contains("kind");
    if (av && av->is_string() && k && k->is_string()) {
      const std::string_view v = av->as_string();
      const auto slash = v.find('/');
      const std::string_view group = slash == std::string_view::npos ? std::string_view() : v.substr(0, slash);
      if (group != kApiGroup && !(group.empty() && k->as_string() == "Secret")) {
        out.foreign = true;
        out.kind = k->as_string();
        return out;
      }
    }
  }
  ObjectReader top(&object, "", errors);
  auto api_version = top.str("apiVersion", true);
  auto kind = top.str("kind", true);
  out.kind = kind.value_or("");
  if (const json::value* md = object.as_object().if_contains("metadata")) {
    if (const auto* mo = md->if_object()) {
      if (auto* n = mo->if_contains("name"); n && n->is_string()) out.name = n->as_string();
    }
  }
  ObjectMeta meta = read_metadata(top.raw("metadata", true), errors);
  if (!api_version || !kind) {
    top.allow({"spec", "status", "data", "stringData", "type"});
    return out;
  }

  auto wrap = [&](auto resource) {
    resource.metadata = std::move(meta);
    top.finish();
    if (errors.empty()) out.resource = std::move(resource);
  };

  if (*kind == "Secret") {
    if (*api_version != "v1") {
      errors.push_back({"apiVersion", "\"" + *api_version + "\" is not v1 (Secret is a core kind)"});
      top.allow({"data", "stringData", "type", "immutable"});
      return out;
    }
    wrap(read_secret(top, errors));
    return out;
  }
  if (*api_version != kApiVersion) {
    errors.push_back({"apiVersion", "\"" + *api_version + "\" is not served; use " +
                                        std::string(kApiVersion)});
    top.allow({"spec", "status"});
    return out;
  }
  if (*kind == "Registry") {
    wrap(read_registry(top, errors));
  } else if (*kind == "ReplicationConfig") {
    wrap(read_replication_config(top, errors));
  } else if (*kind == "RegistryPolicy") {
    wrap(read_registry_policy(top, errors));
  } else if (*kind == "Repository") {
    wrap(read_repository(top, errors));
  } else if (*kind == "ImageReplication") {
    wrap(read_image_replication(top, errors));
  } else if (*kind == "RepositoryCreationTemplate") {
    wrap(read_repository_creation_template(top, errors));
  } else if (*kind == "ReplicationBackfill") {
    wrap(read_replication_backfill(top, errors));
  } else {
    errors.push_back({"kind", "\"" + *kind +
                                  "\" is not a ferry.dev kind; must be Registry, ReplicationConfig, "
                                  "RegistryPolicy, Repository, RepositoryCreationTemplate, ReplicationBackfill or "
                                  "ImageReplication"});
    top.allow({"spec", "status"});
  }
  return out;
}

}  // namespace ferry::model
