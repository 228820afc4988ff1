// Draws the overview's charts with uPlot (vendored) from the data the page carries in
// data-chart; the same numbers are in the table beside each chart, so this is an enhancement.
(function () {
  'use strict';
  if (typeof uPlot === 'undefined') return;
  // Distinct colours with at least 3:1 contrast against white (WCAG 1.4.11 for graphics).
  var colours = ['#0062ba', '#b3261e', '#1a7f37', '#8a4baf', '#b35900', '#006d77', '#6e6e6e', '#a0157d'];
  document.querySelectorAll('[data-chart]').forEach(function (el) {
    var chart = JSON.parse(el.getAttribute('data-chart'));
    var series = [{}];
    var data = [chart.x];
    chart.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: colours[i % colours.length], width: 2 });
      data.push(s.values);
    });
    new uPlot({
      width: Math.max(320, el.clientWidth || 800),
      height: 280,
      scales: { x: { time: true } },
      series: series,
      axes: [{}, { label: '' }],
    }, data, el);
  });
})();
