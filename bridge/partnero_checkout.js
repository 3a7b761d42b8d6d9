/*! partnero-checkout.js, served by partnero-bridge at /partnero-checkout.js.
 * Reads the referring partner's key from the first-party cookie PartneroJS writes and adds it to the
 * checkout links, embeds and forms of the payment providers the bridge knows, in each provider's
 * custom-data parameter. It sends nothing anywhere: it only rewrites URLs already on the page.
 */
(function () {
  "use strict";

  // Both are filled in by the bridge (bridge/checkout.py) from the providers' `checkout_links`.
  const COOKIE = __PARTNERO_COOKIE__;
  const RULES = __PARTNERO_RULES__;

  const LINKS = "a[href], area[href]";
  const SELECTOR = "a[href], area[href], iframe[src], form[action]";

  // included twice (or by two tags): one copy is enough
  if (typeof window === "undefined" || typeof document === "undefined" || window.PartneroCheckout) {
    return;
  }

  function partnerKey() {
    const pairs = document.cookie ? document.cookie.split(";") : [];
    for (let i = 0; i < pairs.length; i += 1) {
      const eq = pairs[i].indexOf("=");
      if (eq < 0 || pairs[i].slice(0, eq).trim() !== COOKIE) {
        continue;
      }
      let value = pairs[i].slice(eq + 1);
      try {
        value = decodeURIComponent(value);
      } catch (e) {
        // a stray "%" is not an escape: the raw value is still the key
      }
      value = value.trim();
      return value || null;
    }
    return null;
  }

  function hostMatches(host, wanted) {
    // a subdomain matches, a look-alike does not: "shop.lemonsqueezy.com" yes, "evillemonsqueezy.com" no
    return host === wanted || host.endsWith("." + wanted);
  }

  function ruleFor(url) {
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      return null;
    }
    const host = url.hostname.toLowerCase();
    for (let i = 0; i < RULES.length; i += 1) {
      const rule = RULES[i];
      if (
        rule.hosts.some((wanted) => hostMatches(host, wanted)) &&
        rule.paths.some((prefix) => url.pathname.startsWith(prefix))
      ) {
        return rule;
      }
    }
    return null;
  }

  function parse(href) {
    if (typeof href !== "string" || href === "") {
      return null;
    }
    try {
      return new URL(href, document.baseURI);
    } catch (e) {
      return null;
    }
  }

  // The URL with the key added, or null when it is no provider checkout or already carries the
  // parameter (a value the merchant set is never overwritten).
  function withKey(href, key) {
    const url = parse(href);
    const rule = url && ruleFor(url);
    if (!rule || url.searchParams.has(rule.param)) {
      return null;
    }
    // appended as text rather than through searchParams.set, which would re-encode every existing
    // parameter; brackets stay readable as in the providers' docs (checkout[custom][...])
    const name = encodeURIComponent(rule.param).replace(/%5B/gi, "[").replace(/%5D/gi, "]");
    const pair = name + "=" + encodeURIComponent(key);
    url.search = url.search ? url.search + "&" + pair : pair;
    return url.href;
  }

  function decorateForm(form, key) {
    // getAttribute: a field named "action" shadows form.action
    const url = parse(form.getAttribute("action"));
    const rule = url && ruleFor(url);
    if (!rule || url.searchParams.has(rule.param)) {
      return false;
    }
    for (let i = 0; i < form.elements.length; i += 1) {
      if (form.elements[i].name === rule.param) {
        return false;
      }
    }
    // a hidden field, because a GET form replaces the action's query string with its fields
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = rule.param;
    input.value = key;
    form.appendChild(input);
    return true;
  }

  function decorateElement(element, key) {
    try {
      const tag = element.tagName;
      const attribute = tag === "A" || tag === "AREA" ? "href" : tag === "IFRAME" ? "src" : null;
      if (attribute) {
        const next = withKey(element.getAttribute(attribute), key);
        if (next) {
          element.setAttribute(attribute, next);
          return true;
        }
        return false;
      }
      return tag === "FORM" ? decorateForm(element, key) : false;
    } catch (e) {
      // one odd element never stops the others
      return false;
    }
  }

  function decorateTree(root, key) {
    let count = 0;
    if (root.matches && root.matches(SELECTOR) && decorateElement(root, key)) {
      count += 1;
    }
    const found = root.querySelectorAll ? root.querySelectorAll(SELECTOR) : [];
    for (let i = 0; i < found.length; i += 1) {
      if (decorateElement(found[i], key)) {
        count += 1;
      }
    }
    return count;
  }

  // decorate(): scan the document again; decorate(element): scan that subtree; decorate("https://...")
  // returns that URL with the key added (for checkouts opened from code, e.g. LemonSqueezy.Url.Open).
  function decorate(target) {
    try {
      const key = partnerKey();
      if (typeof target === "string") {
        return (key && withKey(target, key)) || target;
      }
      return key ? decorateTree(target && target.nodeType ? target : document, key) : 0;
    } catch (e) {
      return typeof target === "string" ? target : 0;
    }
  }

  function onMutations(mutations) {
    try {
      const key = partnerKey();
      if (!key) {
        return;
      }
      for (let i = 0; i < mutations.length; i += 1) {
        const mutation = mutations[i];
        if (mutation.type === "attributes") {
          // our own rewrite lands here too and is a no-op: the parameter is already there
          decorateElement(mutation.target, key);
          continue;
        }
        for (let j = 0; j < mutation.addedNodes.length; j += 1) {
          if (mutation.addedNodes[j].nodeType === 1) {
            decorateTree(mutation.addedNodes[j], key);
          }
        }
      }
    } catch (e) {
      // never break the merchant's page
    }
  }

  // Just in time: PartneroJS may write its cookie after the first scan, on the very visit that
  // brought the partner's referral.
  function onActivate(event) {
    try {
      const target = event.target;
      const element =
        event.type === "submit" ? target : target && target.closest ? target.closest(LINKS) : null;
      const key = element && partnerKey();
      if (key) {
        decorateElement(element, key);
      }
    } catch (e) {
      // never break the click
    }
  }

  function start() {
    decorate(document);
    if (typeof MutationObserver === "function") {
      new MutationObserver(onMutations).observe(document.documentElement, {
        childList: true,
        subtree: true,
        attributes: true,
        attributeFilter: ["href", "src", "action"],
      });
    }
  }

  try {
    window.PartneroCheckout = Object.freeze({ decorate: decorate });
    document.addEventListener("click", onActivate, true);
    document.addEventListener("auxclick", onActivate, true);
    document.addEventListener("submit", onActivate, true);
    window.addEventListener("load", () => decorate(document));
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
  } catch (e) {
    // an exotic page: links stay as they are
  }
})();
