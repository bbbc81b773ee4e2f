// Live updates: when the server says the queue changed, fetch the worklist fragment again.
(function () {
  var worklist = document.getElementById("worklist");
  if (!worklist || !window.EventSource || !window.htmx) { return; }
  var events = new EventSource("/events");
  events.addEventListener("changed", function () {
    htmx.ajax("GET", worklist.getAttribute("data-source"), {target: "#worklist", swap: "innerHTML"});
  });
})();
