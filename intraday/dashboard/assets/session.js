// A session that expired (or a logout in another tab) makes the callbacks answer 401:
// reload the page once, which lands on the login form instead of a silently frozen dashboard.
(function () {
  var origFetch = window.fetch;
  var reloading = false;
  window.fetch = function () {
    return origFetch.apply(this, arguments).then(function (resp) {
      if (resp.status === 401 && !reloading && String(resp.url).indexOf('/_dash-') !== -1) {
        reloading = true;
        window.location.reload();
      }
      return resp;
    });
  };
})();
