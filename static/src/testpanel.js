// The test panel's saved events: picking one loads its request into the test-call form
// (templates/functions/_saved_events.html carries each event in data attributes).
document.addEventListener("change", (event) => {
  const picker = event.target.closest && event.target.closest("[data-saved-event-picker]");
  if (!picker) return;
  const option = picker.selectedOptions[0];
  const form = document.querySelector("form[data-test-call]");
  if (!option || !option.value || !form) return;
  form.elements.method.value = option.dataset.method;
  form.elements.path.value = option.dataset.path;
  form.elements.headers.value = option.dataset.headers;
  form.elements.body.value = option.dataset.body;
  if (form.elements.event_name) form.elements.event_name.value = option.value;
});
