// Writing resources back as Kubernetes-shaped JSON (records in the state directory, status writes).
#pragma once

#include <boost/json/object.hpp>

#include "reconcilers/model/resources.hpp"

namespace ferry::model {

boost::json::object to_json(const ObjectMeta& m);
boost::json::object to_json(const CommonStatus& s);
boost::json::object to_json(const ImageReplication& r);
boost::json::object to_json(const Repository& r);
boost::json::object status_to_json(const ReplicationConfigStatus& s);
boost::json::object status_to_json(const RegistryStatus& s);
boost::json::object status_to_json(const ReplicationBackfillStatus& s);

}  // namespace ferry::model
