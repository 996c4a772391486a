// PaulyOps progressive enhancement: validate wizard fields while typing.
// Pages work without this file; it only asks the server early, through the same
// rules (POST /api/onboarding/validate), and shows the answer next to the field.
(function () {
  "use strict";

  function setPath(target, path, value) {
    var parts = path.split(".");
    var node = target;
    for (var i = 0; i < parts.length - 1; i++) {
      if (typeof node[parts[i]] !== "object" || node[parts[i]] === null) node[parts[i]] = {};
      node = node[parts[i]];
    }
    node[parts[parts.length - 1]] = value;
  }

  // The same mapping from form fields to the wire spec as the server's form handling.
  function collect(form) {
    var spec = {};
    try { spec = JSON.parse(form.getAttribute("data-spec-context") || "{}"); } catch (e) { spec = {}; }
    var providers = null;
    var multi = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.name === "action" || el.name.indexOf("password") === 0) return;
      if (el.name === "storage.providers") {
        providers = providers || [];
        if (el.checked) {
          var entry = { type: el.value };
          Array.prototype.forEach.call(form.querySelectorAll("[name^='storage.providers." + el.value + ".']"), function (input) {
            if (input.value && input.type !== "password") entry[input.name.split(".").pop()] = input.value;
          });
          providers.push(entry);
        }
        return;
      }
      if (el.name.indexOf("storage.providers.") === 0) return;
      if (el.type === "checkbox" && form.querySelectorAll("[name='" + el.name + "']").length > 1) {
        multi[el.name] = multi[el.name] || [];
        if (el.checked) multi[el.name].push(el.value);
        return;
      }
      if (el.type === "checkbox") { setPath(spec, el.name, el.checked); return; }
      if (el.type === "radio") { if (el.checked) setPath(spec, el.name, el.value); return; }
      if (el.value !== "") setPath(spec, el.name, el.value);
    });
    Object.keys(multi).forEach(function (name) { setPath(spec, name, multi[name]); });
    if (providers !== null) setPath(spec, "storage.providers", providers);
    return spec;
  }

  function show(form, errors, touched) {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (slot) {
      var path = slot.getAttribute("data-error-for");
      var error = errors[path];
      var field = slot.closest("[data-field]") || slot.parentNode;
      var input = field.querySelector("input:not([type=hidden]), select");
      if (!touched[path] && !slot.textContent) return;
      slot.textContent = error ? error.message + (error.suggestion ? " Did you mean “" + error.suggestion + "”?" : "") : "";
      if (input) {
        if (error) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      }
    });
  }

  function wire(form) {
    var step = form.getAttribute("data-validate-step");
    var timer = null;
    var touched = {};
    var seq = 0;
    function validate() {
      var mine = ++seq;
      fetch("/api/onboarding/validate", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ step: step, spec: collect(form) })
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (body) {
        if (!body || mine !== seq) return;
        var byField = {};
        (body.errors || []).forEach(function (e) { if (!byField[e.field]) byField[e.field] = e; });
        show(form, byField, touched);
      }).catch(function () { /* offline or rate-limited: the server checks on submit anyway */ });
    }
    function onEdit(event) {
      if (!event.target.name) return;
      var name = event.target.name;
      touched[name.indexOf("storage.providers") === 0 ? "storage.providers" : name] = true;
      clearTimeout(timer);
      timer = setTimeout(validate, 350);
    }
    form.addEventListener("input", onEdit);
    form.addEventListener("change", onEdit);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-validate-step]"), function (form) {
      if (form.getAttribute("data-validate-step") !== "owner") wire(form);
    });
    var first = document.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  });
})();
