#include "reconcilers/model/shard.hpp"

#include <openssl/evp.h>

namespace ferry::model {

std::uint32_t shard_of(const RegistryKey& source, std::string_view repository,
                       std::uint32_t shards) {
  if (shards <= 1) return 0;
  // NUL separators: no two (id, region, repository) triples give the same bytes.
  std::string bytes;
  bytes.reserve(source.registry_id.size() + source.region.size() + repository.size() + 2);
  bytes.append(source.registry_id).push_back('\0');
  bytes.append(source.region).push_back('\0');
  bytes.append(repository);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  std::uint64_t h = 0;
  for (int i = 0; i < 8; ++i) h = (h << 8) | md[i];
  return static_cast<std::uint32_t>(h % shards);
}

std::string shard_lease_name(std::string_view prefix, std::uint32_t shard) {
  return std::string(prefix) + std::to_string(shard);
}

}  // namespace ferry::model
