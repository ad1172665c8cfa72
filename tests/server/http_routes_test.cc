// HttpServer routing on its own: exact routes, prefix routes (the handler reads the rest of the
// path), exact-over-prefix and longest-prefix precedence, 404 and 405 for prefix routes.
#include <gtest/gtest.h>

#include "server/http_client.h"
#include "server/http_server.h"

namespace qwenmux::server {
namespace {

using qwenmux::testing::Call;

Handler Echo(std::string tag) {
  return [tag](const HttpRequest& req, std::shared_ptr<Responder> r) {
    r->Send(200, "text/plain", tag + " " + req.method + " " + req.path + (req.query.empty() ? "" : "?" + req.query));
  };
}

TEST(ServerRoutes, PrefixRoutes) {
  HttpServerOptions o;
  o.port = 0;
  HttpServer http(o);
  http.Route("GET", "/v1/things", Echo("list"));
  http.Route("GET", "/v1/things/", Echo("item"), /*prefix=*/true);
  http.Route("DELETE", "/v1/things/", Echo("del"), /*prefix=*/true);
  http.Route("GET", "/v1/things/special", Echo("exact"));
  http.Route("GET", "/v1/things/deep/", Echo("deep"), /*prefix=*/true);
  ASSERT_TRUE(http.Start().ok());
  const uint16_t port = http.port();

  EXPECT_EQ(Call(port, "GET", "/v1/things").body, "list GET /v1/things");
  EXPECT_EQ(Call(port, "GET", "/v1/things/abc").body, "item GET /v1/things/abc");
  EXPECT_EQ(Call(port, "GET", "/v1/things/abc/results?x=1").body, "item GET /v1/things/abc/results?x=1");
  EXPECT_EQ(Call(port, "DELETE", "/v1/things/abc").body, "del DELETE /v1/things/abc");
  // An exact route wins over a prefix; the longest prefix wins over a shorter one.
  EXPECT_EQ(Call(port, "GET", "/v1/things/special").body, "exact GET /v1/things/special");
  EXPECT_EQ(Call(port, "GET", "/v1/things/deep/x").body, "deep GET /v1/things/deep/x");
  // A prefix does not match a path that only shares its start without the separator.
  EXPECT_EQ(Call(port, "GET", "/v1/thingsX").status, 404);
  EXPECT_EQ(Call(port, "GET", "/v1/other").status, 404);
  // Method not registered on the prefix: 405 with Allow.
  auto r = Call(port, "POST", "/v1/things/abc");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "DELETE, GET");
  // The exact route's own methods apply to it, not the prefix's.
  EXPECT_EQ(Call(port, "DELETE", "/v1/things/special").status, 405);
  http.Stop();
}

}  // namespace
}  // namespace qwenmux::server
