// The live queue (progressive enhancement: without it the queue is a plain page). Listens to
// /alerts/stream and, when detection has added alerts since the page was made, says so in the
// page's live region with a link that loads them; the table itself never changes under the
// analyst's hands.
(function () {
  'use strict';
  var queue = document.querySelector('[data-live-since]');
  var notice = document.getElementById('live-notice');
  if (!queue || !notice || !('EventSource' in window)) return;
  var query = 'since=' + encodeURIComponent(queue.getAttribute('data-live-since'));
  var tenant = queue.getAttribute('data-live-tenant');
  if (tenant) query += '&tenant=' + encodeURIComponent(tenant);
  var source = new EventSource('/alerts/stream?' + query);
  source.addEventListener('alerts', function (e) {
    var n = JSON.parse(e.data).new;
    if (n > 0) {
      notice.querySelector('[data-count]').textContent = n === 1
        ? notice.getAttribute('data-one')
        : n + ' ' + notice.getAttribute('data-many');
      notice.hidden = false;
    }
  });
})();
