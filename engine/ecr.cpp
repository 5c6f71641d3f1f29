// Amazon ECR registries (SPEC §7): API clients and credentials, data-plane tokens,
// CreateRepository, listing.
#include <spdlog/spdlog.h>

#include <boost/url/parse.hpp>

#include "engine/engine_impl.hpp"
#include "reconcilers/status.hpp"

namespace ferry::engine {

std::shared_ptr<ReplicationEngine::Impl::Ecr> ReplicationEngine::Impl::ecr_of(
    const RegistryKey& k) const {
  auto it = ecr.find(key_text(k));
  return it == ecr.end() ? nullptr : it->second;
}

void ReplicationEngine::Impl::update_ecr_registries() {
  std::map<std::string, std::shared_ptr<Ecr>> next;
  for (const auto& r : index.registries()) {
    if (r.spec.type != model::RegistryType::Ecr) continue;
    const std::string k = key_text(r.key());
    const model::Secret* secret =
        r.spec.credentials_secret_ref ? index.secret(*r.spec.credentials_secret_ref) : nullptr;
    std::string sig = r.spec.endpoint + "|" + r.spec.ecr_api_endpoint + "|" + r.spec.sts_endpoint +
                      "|" + r.spec.ecr_events_queue_url;
    if (secret) {
      for (const auto& [key, value] : secret->data)
        sig += "|" + key + "=" + model::sha256_hex(value);
    }
    auto tls = tls_for(r);
    if (tls) sig += "|" + tls_signature(*tls);
    if (auto old = ecr.find(k); old != ecr.end() && old->second->signature == sig) {
      next[k] = old->second;
      continue;
    }
    auto e = std::make_shared<Ecr>();
    e->signature = sig;
    const aws::StsOptions sts{r.spec.region, r.spec.sts_endpoint};
    aws::Result<std::shared_ptr<aws::CredentialsProvider>> creds =
        std::unexpected(aws::Error{.kind = aws::ErrorKind::Credentials});
    if (!tls) {
      e->error = tls.error();
    } else if (r.spec.credentials_secret_ref && !secret) {
      e->error = "credentials Secret " + r.spec.credentials_secret_ref->namespace_ + "/" +
                 r.spec.credentials_secret_ref->name + " not found";
    } else {
      auto& http = aws_http_for(*tls);
      creds = secret ? aws::from_secret(secret->data, http, sts)
                     : aws::default_chain(http, aws::process_environment(), sts);
      if (!creds) e->error = "AWS credentials for " + k + ": " + creds.error().to_string();
    }
    if (e->error.empty()) {
      e->creds = *creds;
      auto& http = aws_http_for(*tls);
      e->api = std::make_shared<aws::EcrClient>(
          http, e->creds,
          aws::EcrOptions{r.spec.region, r.spec.ecr_api_endpoint, r.spec.registry_id});
      if (auto q = boost::urls::parse_absolute_uri(r.spec.ecr_events_queue_url)) {
        // SQS answers on the queue URL's own origin (a VPC endpoint, another partition, a test).
        const std::string origin =
            std::string(q->scheme()) + "://" + std::string(q->encoded_host_and_port());
        e->sqs = std::make_shared<aws::SqsClient>(http, e->creds,
                                                  aws::SqsOptions{r.spec.region, origin});
      }
      spdlog::info("msg=\"ECR registry\" registry={} api={} credentials={}", k, e->api->endpoint(),
                   e->creds->name());
    } else {
      spdlog::error("msg=\"ECR registry unusable\" registry={} error=\"{}\"", k, e->error);
    }
    next[k] = std::move(e);
  }
  ecr = std::move(next);
}

// Makes sure an ECR registry's data-plane token is fresh; nothing to do for other registries.
asio::awaitable<std::expected<void, Failure>> ReplicationEngine::Impl::ecr_ready(RegistryKey k) {
  auto self = shared_from_this();
  auto e = ecr_of(k);
  if (!e) co_return std::expected<void, Failure>{};
  if (!e->error.empty())
    co_return std::unexpected(Failure{e->error, false});  // no credentials: configuration
  const auto now = std::chrono::system_clock::now();
  if (e->token &&
      (!e->token->expires_at || *e->token->expires_at - now > std::chrono::minutes(5))) {
    co_return std::expected<void, Failure>{};
  }
  auto token = co_await e->api->get_authorization_token();
  if (!token) co_return std::unexpected(failure(token.error()));
  e->token = std::move(*token);
  spdlog::info("msg=\"ECR authorization token obtained\" registry={}", key_text(k));
  if (ecr_of(k) == e) update_copier();
  co_return std::expected<void, Failure>{};
}

// A 401 from an ECR data plane: the token is dropped, the next attempt asks for a new one.
void ReplicationEngine::Impl::ecr_unauthorized(const RegistryKey& k) {
  if (auto e = ecr_of(k); e && e->token) {
    e->token.reset();
    spdlog::warn("msg=\"ECR token refused; a new one is asked for\" registry={}", key_text(k));
  }
}

// ECR's view of a repository as a Repository: mutability, exclusion filters, scanning, encryption.
model::Repository ReplicationEngine::Impl::repository_from_ecr(const RegistryKey& dest,
                                                               const aws::Repository& r) {
  model::Repository out;
  out.metadata.name = model::repository_record_name(dest, r.name);
  out.spec.registry_id = dest.registry_id;
  out.spec.region = dest.region;
  out.spec.repository_name = r.name;
  out.spec.image_tag_mutability =
      r.image_tag_mutability.empty() ? "MUTABLE" : r.image_tag_mutability;
  for (const auto& f : r.exclusion_filters) {
    out.spec.image_tag_mutability_exclusion_filters.push_back({f.filter, f.filter_type});
  }
  out.spec.scan_on_push = r.scan_on_push;
  out.spec.encryption_type = r.encryption_type.empty() ? "AES256" : r.encryption_type;
  out.spec.kms_key = r.kms_key;
  return out;
}

asio::awaitable<std::expected<ReplicationEngine::Impl::EcrDestination, Failure>>
ReplicationEngine::Impl::ecr_destination(RegistryKey dest, model::ImageSource src) {
  auto self = shared_from_this();
  auto e = ecr_of(dest);
  if (!e || !e->error.empty())
    co_return std::unexpected(Failure{e ? e->error : "not an ECR registry", false});
  const RegistryKey src_key{src.registry_id, src.region};
  const std::string& repo = src.repository_name;
  auto described = co_await e->api->describe_repository(repo);
  if (!described) co_return std::unexpected(failure(described.error()));
  EcrDestination out;
  if (*described) {
    out.settings = repository_from_ecr(dest, **described);
    co_return out;
  }
  // Absent: creating it needs ecr:CreateRepository (S2), decided on the policy as it is now.
  auto auth = model::authorize(index, src_key, dest, repo, false);
  if (!auth.allowed) {
    out.denied_code = auth.failure_code;
    out.denied_message = auth.message;
    co_return out;
  }
  const model::RepositoryCreationTemplate* shape = index.creation_template(dest, repo);
  aws::CreateRepositoryInput in;
  in.name = repo;
  if (shape) {
    in.image_tag_mutability = shape->spec.image_tag_mutability;
    for (const auto& f : shape->spec.image_tag_mutability_exclusion_filters) {
      in.exclusion_filters.push_back({f.filter_type, f.filter});
    }
    in.encryption_type = shape->spec.encryption_type;
    in.kms_key = shape->spec.kms_key;
    for (const auto& t : shape->spec.resource_tags) in.tags.emplace_back(t.key, t.value);
  }
  const std::string template_name = shape ? shape->metadata.name : "";
  const auto repository_policy = shape ? shape->spec.repository_policy : json::value();
  const auto lifecycle_policy = shape ? shape->spec.lifecycle_policy : json::value();
  auto created = co_await e->api->create_repository(in);
  aws::Repository made;
  if (created) {
    made = std::move(*created);
  } else if (created.error().is(
                 "RepositoryAlreadyExistsException")) {  // created meanwhile: keep it
    auto again = co_await e->api->describe_repository(repo);
    if (!again || !*again) {
      co_return std::unexpected(
          again ? Failure{"repository " + repo + " vanished right after it existed"}
                : failure(again.error()));
    }
    out.settings = repository_from_ecr(dest, **again);
    co_return out;
  } else {
    co_return std::unexpected(failure(created.error()));
  }
  auto document = [](const json::value& v) {
    return v.is_string() ? std::string(v.as_string()) : json::serialize(v);
  };
  if (!repository_policy.is_null()) {
    if (auto w = co_await e->api->set_repository_policy(repo, document(repository_policy)); !w) {
      co_return std::unexpected(failure(w.error()));
    }
  }
  if (!lifecycle_policy.is_null()) {
    if (auto w = co_await e->api->put_lifecycle_policy(repo, document(lifecycle_policy)); !w) {
      co_return std::unexpected(failure(w.error()));
    }
  }
  auto record = repository_from_ecr(dest, made);
  record.metadata.generation = 1;
  record.metadata.creation_timestamp = now_text();
  for (const auto& [k, v] : in.tags) record.spec.resource_tags.push_back({k, v});
  record.status.created_by = "Replication";
  record.status.created_at = record.metadata.creation_timestamp;
  record.status.source_registry = src_key;
  record.status.source_repository_name = repo;
  record.status.template_name = template_name;
  reconcilers::replicated_repository_conditions(record, record.status.created_at);
  save_repository(record);
  spdlog::info(
      "msg=\"repository created\" registry={} repository={} record={} template={} "
      "via=CreateRepository",
      key_text(dest), repo, record.metadata.name, template_name.empty() ? "none" : template_name);
  out.settings = std::move(record);
  co_return out;
}

// Every tag of every repository of an ECR source that `wanted` accepts, from DescribeRepositories
// and DescribeImages (ECR has no _catalog); the push time is ECR's imagePushedAt (S3).
asio::awaitable<std::expected<std::vector<model::PushEvent>, std::string>>
ReplicationEngine::Impl::list_ecr_images(RegistryKey reg,
                                         std::function<bool(const std::string&)> wanted) {
  auto self = shared_from_this();
  auto e = ecr_of(reg);
  if (!e || !e->error.empty()) co_return std::unexpected(e ? e->error : "not an ECR registry");
  auto api = e->api;
  auto repos = co_await api->describe_repositories();
  if (!repos) co_return std::unexpected(repos.error().to_string());
  std::erase_if(*repos, [&](const aws::Repository& r) { return wanted && !wanted(r.name); });
  std::vector<std::vector<aws::Image>> images(repos->size());
  std::string failure;
  co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
    auto got = co_await api->describe_images((*repos)[i].name);
    if (got) {
      images[i] = std::move(*got);
    } else if (!got.error().is("RepositoryNotFoundException") && failure.empty()) {
      failure = got.error().to_string();
    }
  });
  if (!failure.empty()) co_return std::unexpected(failure);
  std::vector<model::PushEvent> out;
  for (std::size_t i = 0; i < repos->size(); ++i) {
    for (const auto& img : images[i]) {
      for (const auto& tag : img.tags) {
        model::PushEvent p;
        p.repository = (*repos)[i].name;
        p.tag = tag;
        p.digest = img.digest;
        p.media_type = img.manifest_media_type;
        if (img.pushed_at) p.timestamp = model::format_rfc3339(*img.pushed_at, true);
        out.push_back(std::move(p));
      }
    }
  }
  co_return out;
}

}  // namespace ferry::engine
