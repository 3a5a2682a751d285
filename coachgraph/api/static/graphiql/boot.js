// coachgraph's GraphiQL: every asset comes from this app (no CDN), queries go to /graphql over
// HTTP, subscriptions over its WebSocket (graphql-transport-ws). The Authorization header set
// in the Headers tab is sent with every HTTP request and, for subscriptions, as the
// connection_init payload the server authenticates WebSockets with.
(function () {
  "use strict";
  var page = document.getElementById("graphiql");
  var url = new URL(page.getAttribute("data-endpoint"), window.location.href);
  var socketUrl = new URL(url.href);
  socketUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";

  var EXAMPLE = [
    "# coachgraph GraphiQL: everything here is served by the API itself.",
    "#",
    "# Anonymous viewers see coaches, skills and programs. To act as someone,",
    "# make a token (`coachgraph token --role admin`, or the ones `serve --demo`",
    "# prints) and put it in the Headers tab below:",
    '#   {"Authorization": "Bearer <token>"}',
    "# Subscriptions use the same header over the WebSocket.",
    "",
    "{",
    "  coaches(first: 3) {",
    "    totalCount",
    "    edges { node { id name sports city } }",
    "  }",
    "}",
    "",
  ].join("\n");

  var fetchers = {};
  function authorization(headers) {
    if (!headers) return "";
    for (var key in headers) {
      if (key.toLowerCase() === "authorization") return String(headers[key]);
    }
    return "";
  }
  // one fetcher (and so one WebSocket) per Authorization value: connection_init carries it
  function fetcher(params, options) {
    var auth = authorization(options && options.headers);
    if (!fetchers[auth]) {
      fetchers[auth] = GraphiQL.createFetcher({
        url: url.href,
        subscriptionUrl: socketUrl.href,
        wsConnectionParams: auth ? { authorization: auth } : {},
      });
    }
    return fetchers[auth](params, options);
  }

  var root = ReactDOM.createRoot(page);
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: EXAMPLE,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: "headers",
      inputValueDeprecation: true,
    })
  );
})();
