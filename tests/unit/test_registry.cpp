// The one plug-in registry (distrib/registry.h) and the three registries built on it.
#include <distrib/registry.h>
#include <distrib/services/events.h>
#include <distrib/services/failover.h>
#include <distrib/store/store.h>

#include <catch2/catch.hpp>

using namespace distrib;
using Catch::Matchers::Contains;

namespace {
struct Shape {
  virtual ~Shape() = default;
  virtual int sides() const = 0;
};
struct Square : Shape {
  int sides() const override { return 4; }
};
}  // namespace

TEST_CASE("a registry makes what is registered and refuses duplicates and unknown names", "[registry]") {
  Registry<Shape, int> shapes("shape");
  int seen = 0;
  shapes.add("square", [&](const int& n) {
    seen = n;
    return std::make_unique<Square>();
  });
  shapes.add("triangle",
             [](const int&) -> std::unique_ptr<Shape> { throw Error(ErrorKind::invalid_argument, "no"); });
  CHECK(shapes.contains("square"));
  CHECK_FALSE(shapes.contains("circle"));
  CHECK(shapes.names() == std::vector<std::string>{"square", "triangle"});
  CHECK(shapes.make("square", 7)->sides() == 4);
  CHECK(seen == 7);
  CHECK_THROWS_WITH(shapes.make("circle", 1), "unknown shape \"circle\" (known: square, triangle)");
  CHECK_THROWS_WITH(shapes.make("triangle", 1), "no");  // the factory's own error passes through
  CHECK_THROWS_WITH(shapes.add("square", nullptr), "shape \"square\" is registered twice");
  CHECK(shapes.names().size() == 2);  // the refused one changed nothing

  Registry<Shape, int> empty("shape");
  CHECK(empty.names().empty());
  CHECK_THROWS_WITH(empty.make("square", 1), "unknown shape \"square\" (known: )");
}

TEST_CASE("stores, coordinators and event sinks use the same words", "[registry]") {
  StoreRegistry stores;
  register_builtin_stores(stores);
  CHECK(stores.contains("sqlite"));
  StoreSettings s;
  s.backend = "mysql";
  CHECK_THROWS_WITH(stores.open(s), "unknown database backend \"mysql\" (known: odbc, postgresql, sqlite)");
  CHECK_THROWS_WITH(stores.add("odbc", nullptr), "database backend \"odbc\" is registered twice");

  CoordinatorRegistry coordinators;
  register_builtin_coordinators(coordinators);
  CHECK(coordinators.contains("db-lease"));
  CHECK_FALSE(coordinators.contains("zookeeper"));
  CHECK_THROWS_WITH(coordinators.make("zookeeper", {}),
                    Contains("unknown failover coordinator \"zookeeper\" (known: "));
  CHECK_THROWS_WITH(coordinators.add("etcd", nullptr), "failover coordinator \"etcd\" is registered twice");

  EventSinkRegistry sinks;
  register_builtin_event_sinks(sinks);
  CHECK_THROWS_WITH(sinks.add("file", {}, nullptr), "event sink type \"file\" is registered twice");
  CHECK(sinks.types() == std::vector<std::string>{"exec", "file", "snmp", "syslog", "webhook"});
}
