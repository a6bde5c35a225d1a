/* Leadline inquiry widget, v1. One tag on any page:
 *   <script src="https://leads.example.com/widget/v1.js" data-leadline-key="pk_..." async></script>
 * Renders into [data-leadline-form] if the page has one, else right after the tag,
 * inside a shadow root. No eval, no inline script, no external request but Leadline's. */
(() => {
  "use strict";

  const T = {
    en: {
      name: "Name", email: "Email", phone: "Phone", phoneHint: "International format, e.g. +30 694 123 4567",
      from: "From", to: "To", flexible: "My dates are flexible", adults: "Adults", children: "Children",
      destination: "Destination", any: "Any", yachtType: "Yacht type", charterType: "Charter type",
      budget: "Budget", message: "Message", consent: "I agree to the {privacy}.", privacy: "privacy policy",
      marketing: "Send me offers and news", submit: "Send inquiry", sending: "Sending…",
      success: "Thank you! We received your inquiry and will be in touch shortly.", choose: "Choose…",
      required: "This field is required.", badEmail: "Please enter a valid email address.",
      badPhone: "Please enter the number in international format, starting with + and the country code.",
      badDates: "Please check the dates: the end must be after the start, and not in the past.",
      badGuests: "Please enter the number of guests (1 to 60).", badConsent: "Please agree to the privacy policy to send your inquiry.",
      invalid: "Please check this field.", fix: "Please correct the highlighted fields.",
      forbidden: "This form cannot be sent from this website. Please contact the company directly.",
      failed: "Your inquiry could not be sent. Please try again in a moment.", unavailable: "The inquiry form is unavailable right now.",
      types: { sailing_yacht: "Sailing yacht", catamaran: "Catamaran", motor_yacht: "Motor yacht", gulet: "Gulet", power_catamaran: "Power catamaran", superyacht: "Superyacht" },
      charters: { bareboat: "Bareboat", skippered: "Skippered", crewed: "Crewed", cabin: "Cabin charter" },
    },
    de: {
      name: "Name", email: "E-Mail", phone: "Telefon", phoneHint: "Internationales Format, z. B. +49 151 2345 6789",
      from: "Von", to: "Bis", flexible: "Meine Daten sind flexibel", adults: "Erwachsene", children: "Kinder",
      destination: "Reiseziel", any: "Beliebig", yachtType: "Yachttyp", charterType: "Charterart",
      budget: "Budget", message: "Nachricht", consent: "Ich stimme der {privacy} zu.", privacy: "Datenschutzerklärung",
      marketing: "Angebote und Neuigkeiten erhalten", submit: "Anfrage senden", sending: "Wird gesendet…",
      success: "Vielen Dank! Wir haben Ihre Anfrage erhalten und melden uns in Kürze.", choose: "Bitte wählen…",
      required: "Dieses Feld ist erforderlich.", badEmail: "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
      badPhone: "Bitte geben Sie die Nummer im internationalen Format ein, beginnend mit + und der Landesvorwahl.",
      badDates: "Bitte prüfen Sie die Daten: Das Ende muss nach dem Beginn liegen und nicht in der Vergangenheit.",
      badGuests: "Bitte geben Sie die Anzahl der Gäste an (1 bis 60).", badConsent: "Bitte stimmen Sie der Datenschutzerklärung zu, um Ihre Anfrage zu senden.",
      invalid: "Bitte prüfen Sie dieses Feld.", fix: "Bitte korrigieren Sie die markierten Felder.",
      forbidden: "Dieses Formular kann von dieser Website nicht gesendet werden. Bitte kontaktieren Sie das Unternehmen direkt.",
      failed: "Ihre Anfrage konnte nicht gesendet werden. Bitte versuchen Sie es gleich noch einmal.", unavailable: "Das Anfrageformular ist derzeit nicht verfügbar.",
      types: { sailing_yacht: "Segelyacht", catamaran: "Katamaran", motor_yacht: "Motoryacht", gulet: "Gulet", power_catamaran: "Motorkatamaran", superyacht: "Superyacht" },
      charters: { bareboat: "Bareboat", skippered: "Mit Skipper", crewed: "Mit Crew", cabin: "Kabinencharter" },
    },
    fr: {
      name: "Nom", email: "E-mail", phone: "Téléphone", phoneHint: "Format international, p. ex. +33 6 12 34 56 78",
      from: "Du", to: "Au", flexible: "Mes dates sont flexibles", adults: "Adultes", children: "Enfants",
      destination: "Destination", any: "Indifférent", yachtType: "Type de bateau", charterType: "Type de location",
      budget: "Budget", message: "Message", consent: "J’accepte la {privacy}.", privacy: "politique de confidentialité",
      marketing: "Recevoir des offres et des nouvelles", submit: "Envoyer la demande", sending: "Envoi…",
      success: "Merci ! Nous avons bien reçu votre demande et vous répondrons rapidement.", choose: "Choisir…",
      required: "Ce champ est obligatoire.", badEmail: "Veuillez saisir une adresse e-mail valide.",
      badPhone: "Veuillez saisir le numéro au format international, avec + et l’indicatif du pays.",
      badDates: "Veuillez vérifier les dates : la fin doit suivre le début et ne pas être passée.",
      badGuests: "Veuillez indiquer le nombre de personnes (1 à 60).", badConsent: "Veuillez accepter la politique de confidentialité pour envoyer votre demande.",
      invalid: "Veuillez vérifier ce champ.", fix: "Veuillez corriger les champs signalés.",
      forbidden: "Ce formulaire ne peut pas être envoyé depuis ce site. Veuillez contacter directement l’entreprise.",
      failed: "Votre demande n’a pas pu être envoyée. Veuillez réessayer dans un instant.", unavailable: "Le formulaire de demande est indisponible pour le moment.",
      types: { sailing_yacht: "Voilier", catamaran: "Catamaran", motor_yacht: "Yacht à moteur", gulet: "Goélette", power_catamaran: "Catamaran à moteur", superyacht: "Superyacht" },
      charters: { bareboat: "Sans skipper", skippered: "Avec skipper", crewed: "Avec équipage", cabin: "À la cabine" },
    },
    it: {
      name: "Nome", email: "Email", phone: "Telefono", phoneHint: "Formato internazionale, ad es. +39 312 345 6789",
      from: "Dal", to: "Al", flexible: "Le mie date sono flessibili", adults: "Adulti", children: "Bambini",
      destination: "Destinazione", any: "Qualsiasi", yachtType: "Tipo di barca", charterType: "Tipo di noleggio",
      budget: "Budget", message: "Messaggio", consent: "Accetto l’{privacy}.", privacy: "informativa sulla privacy",
      marketing: "Ricevere offerte e novità", submit: "Invia richiesta", sending: "Invio…",
      success: "Grazie! Abbiamo ricevuto la sua richiesta e la contatteremo a breve.", choose: "Scegli…",
      required: "Questo campo è obbligatorio.", badEmail: "Inserisca un indirizzo email valido.",
      badPhone: "Inserisca il numero in formato internazionale, con + e il prefisso del paese.",
      badDates: "Controlli le date: la fine deve seguire l’inizio e non essere passata.",
      badGuests: "Indichi il numero di ospiti (da 1 a 60).", badConsent: "Accetti l’informativa sulla privacy per inviare la richiesta.",
      invalid: "Controlli questo campo.", fix: "Corregga i campi evidenziati.",
      forbidden: "Questo modulo non può essere inviato da questo sito. Contatti direttamente l’azienda.",
      failed: "Non è stato possibile inviare la richiesta. Riprovi tra un momento.", unavailable: "Il modulo di richiesta non è disponibile al momento.",
      types: { sailing_yacht: "Barca a vela", catamaran: "Catamarano", motor_yacht: "Yacht a motore", gulet: "Caicco", power_catamaran: "Catamarano a motore", superyacht: "Superyacht" },
      charters: { bareboat: "Senza skipper", skippered: "Con skipper", crewed: "Con equipaggio", cabin: "Alla cabina" },
    },
    es: {
      name: "Nombre", email: "Correo electrónico", phone: "Teléfono", phoneHint: "Formato internacional, p. ej. +34 612 345 678",
      from: "Desde", to: "Hasta", flexible: "Mis fechas son flexibles", adults: "Adultos", children: "Niños",
      destination: "Destino", any: "Cualquiera", yachtType: "Tipo de barco", charterType: "Tipo de alquiler",
      budget: "Presupuesto", message: "Mensaje", consent: "Acepto la {privacy}.", privacy: "política de privacidad",
      marketing: "Recibir ofertas y novedades", submit: "Enviar solicitud", sending: "Enviando…",
      success: "¡Gracias! Hemos recibido su solicitud y le contactaremos en breve.", choose: "Elegir…",
      required: "Este campo es obligatorio.", badEmail: "Introduzca un correo electrónico válido.",
      badPhone: "Introduzca el número en formato internacional, con + y el prefijo del país.",
      badDates: "Revise las fechas: el final debe ser posterior al inicio y no estar en el pasado.",
      badGuests: "Indique el número de personas (de 1 a 60).", badConsent: "Acepte la política de privacidad para enviar su solicitud.",
      invalid: "Revise este campo.", fix: "Corrija los campos señalados.",
      forbidden: "Este formulario no se puede enviar desde este sitio. Contacte directamente con la empresa.",
      failed: "No se pudo enviar su solicitud. Inténtelo de nuevo en un momento.", unavailable: "El formulario no está disponible en este momento.",
      types: { sailing_yacht: "Velero", catamaran: "Catamarán", motor_yacht: "Yate a motor", gulet: "Goleta", power_catamaran: "Catamarán a motor", superyacht: "Superyate" },
      charters: { bareboat: "Sin patrón", skippered: "Con patrón", crewed: "Con tripulación", cabin: "Por camarote" },
    },
    el: {
      name: "Όνομα", email: "Email", phone: "Τηλέφωνο", phoneHint: "Διεθνής μορφή, π.χ. +30 694 123 4567",
      from: "Από", to: "Έως", flexible: "Οι ημερομηνίες μου είναι ευέλικτες", adults: "Ενήλικες", children: "Παιδιά",
      destination: "Προορισμός", any: "Οποιοσδήποτε", yachtType: "Τύπος σκάφους", charterType: "Τύπος ναύλωσης",
      budget: "Προϋπολογισμός", message: "Μήνυμα", consent: "Αποδέχομαι την {privacy}.", privacy: "πολιτική απορρήτου",
      marketing: "Θέλω να λαμβάνω προσφορές και νέα", submit: "Αποστολή αιτήματος", sending: "Αποστολή…",
      success: "Ευχαριστούμε! Λάβαμε το αίτημά σας και θα επικοινωνήσουμε σύντομα.", choose: "Επιλέξτε…",
      required: "Το πεδίο είναι υποχρεωτικό.", badEmail: "Εισαγάγετε ένα έγκυρο email.",
      badPhone: "Εισαγάγετε τον αριθμό σε διεθνή μορφή, με + και τον κωδικό χώρας.",
      badDates: "Ελέγξτε τις ημερομηνίες: η λήξη πρέπει να είναι μετά την έναρξη και όχι στο παρελθόν.",
      badGuests: "Εισαγάγετε τον αριθμό των επισκεπτών (1 έως 60).", badConsent: "Αποδεχτείτε την πολιτική απορρήτου για να στείλετε το αίτημα.",
      invalid: "Ελέγξτε αυτό το πεδίο.", fix: "Διορθώστε τα επισημασμένα πεδία.",
      forbidden: "Η φόρμα δεν μπορεί να σταλεί από αυτόν τον ιστότοπο. Επικοινωνήστε απευθείας με την εταιρεία.",
      failed: "Το αίτημα δεν στάλθηκε. Δοκιμάστε ξανά σε λίγο.", unavailable: "Η φόρμα δεν είναι διαθέσιμη αυτή τη στιγμή.",
      types: { sailing_yacht: "Ιστιοπλοϊκό", catamaran: "Καταμαράν", motor_yacht: "Μηχανοκίνητο", gulet: "Γκουλέτα", power_catamaran: "Μηχανοκίνητο καταμαράν", superyacht: "Υπερθαλαμηγός" },
      charters: { bareboat: "Χωρίς κυβερνήτη", skippered: "Με κυβερνήτη", crewed: "Με πλήρωμα", cabin: "Ανά καμπίνα" },
    },
    hr: {
      name: "Ime", email: "E-pošta", phone: "Telefon", phoneHint: "Međunarodni oblik, npr. +385 91 234 5678",
      from: "Od", to: "Do", flexible: "Datumi su mi fleksibilni", adults: "Odrasli", children: "Djeca",
      destination: "Odredište", any: "Bilo koje", yachtType: "Vrsta plovila", charterType: "Vrsta najma",
      budget: "Budžet", message: "Poruka", consent: "Prihvaćam {privacy}.", privacy: "pravila privatnosti",
      marketing: "Želim primati ponude i novosti", submit: "Pošalji upit", sending: "Slanje…",
      success: "Hvala! Primili smo vaš upit i uskoro ćemo vam se javiti.", choose: "Odaberite…",
      required: "Ovo polje je obavezno.", badEmail: "Unesite ispravnu adresu e-pošte.",
      badPhone: "Unesite broj u međunarodnom obliku, s + i pozivnim brojem države.",
      badDates: "Provjerite datume: završetak mora biti nakon početka i ne u prošlosti.",
      badGuests: "Unesite broj gostiju (od 1 do 60).", badConsent: "Prihvatite pravila privatnosti da biste poslali upit.",
      invalid: "Provjerite ovo polje.", fix: "Ispravite označena polja.",
      forbidden: "Ovaj obrazac nije moguće poslati s ove stranice. Obratite se izravno tvrtki.",
      failed: "Upit nije poslan. Pokušajte ponovno za trenutak.", unavailable: "Obrazac za upit trenutačno nije dostupan.",
      types: { sailing_yacht: "Jedrilica", catamaran: "Katamaran", motor_yacht: "Motorna jahta", gulet: "Gulet", power_catamaran: "Motorni katamaran", superyacht: "Superjahta" },
      charters: { bareboat: "Bez skipera", skippered: "Sa skiperom", crewed: "S posadom", cabin: "Po kabini" },
    },
    tr: {
      name: "Ad", email: "E-posta", phone: "Telefon", phoneHint: "Uluslararası biçim, ör. +90 532 123 4567",
      from: "Başlangıç", to: "Bitiş", flexible: "Tarihlerim esnek", adults: "Yetişkin", children: "Çocuk",
      destination: "Varış yeri", any: "Fark etmez", yachtType: "Tekne tipi", charterType: "Kiralama tipi",
      budget: "Bütçe", message: "Mesaj", consent: "{privacy} kabul ediyorum.", privacy: "Gizlilik politikasını",
      marketing: "Teklif ve haber almak istiyorum", submit: "Talebi gönder", sending: "Gönderiliyor…",
      success: "Teşekkürler! Talebinizi aldık, en kısa sürede size döneceğiz.", choose: "Seçin…",
      required: "Bu alan zorunludur.", badEmail: "Lütfen geçerli bir e-posta adresi girin.",
      badPhone: "Lütfen numarayı + ve ülke koduyla uluslararası biçimde girin.",
      badDates: "Lütfen tarihleri kontrol edin: bitiş başlangıçtan sonra olmalı ve geçmişte olmamalı.",
      badGuests: "Lütfen kişi sayısını girin (1 ile 60 arası).", badConsent: "Talebinizi göndermek için gizlilik politikasını kabul edin.",
      invalid: "Lütfen bu alanı kontrol edin.", fix: "Lütfen işaretli alanları düzeltin.",
      forbidden: "Bu form bu siteden gönderilemez. Lütfen doğrudan firmayla iletişime geçin.",
      failed: "Talebiniz gönderilemedi. Lütfen biraz sonra tekrar deneyin.", unavailable: "Talep formu şu anda kullanılamıyor.",
      types: { sailing_yacht: "Yelkenli", catamaran: "Katamaran", motor_yacht: "Motoryat", gulet: "Gulet", power_catamaran: "Motorlu katamaran", superyacht: "Süperyat" },
      charters: { bareboat: "Kaptansız", skippered: "Kaptanlı", crewed: "Mürettebatlı", cabin: "Kabin kiralama" },
    },
  };

  const script = document.currentScript;
  if (!script || !script.dataset.leadlineKey) return;
  const key = script.dataset.leadlineKey;
  const base = new URL(script.src, location.href).origin;
  const lang = (script.dataset.locale || document.documentElement.lang || "en").trim();
  const code = lang.toLowerCase().split(/[-_]/)[0];
  const t = T[code] || T.en;
  const locale = T[code] ? lang : "en";

  let host = document.querySelector("[data-leadline-form]");
  if (!host) {
    host = document.createElement("div");
    script.insertAdjacentElement("afterend", host);
  }
  // `all: initial` keeps the host page's CSS off the host element itself.
  host.style.setProperty("all", "initial", "important");
  host.style.setProperty("display", "block", "important");
  const root = host.attachShadow({ mode: "open" });
  const shownAt = Date.now();

  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v == null) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  };

  const css = (accent, font) => `
:host, * { box-sizing: border-box; }
.ll { all: initial; display: block; font-family: ${font || "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"};
  font-size: 16px; line-height: 1.45; color: #1b2a3a; background: #fff; max-width: 40rem; padding: 1rem;
  border: 1px solid #c9d3de; border-radius: .5rem; }
form { display: grid; gap: .9rem; margin: 0; }
.row { display: grid; gap: .9rem; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); }
.f { display: grid; gap: .25rem; min-width: 0; }
label, legend { font-weight: 600; font-size: .95rem; color: #1b2a3a; }
input, select, textarea { font: inherit; color: #1b2a3a; background: #fff; width: 100%; min-width: 0;
  padding: .55rem .6rem; border: 1px solid #6b7c8f; border-radius: .35rem; }
textarea { min-height: 6rem; resize: vertical; }
input[type=checkbox] { width: 1.15rem; height: 1.15rem; margin: .15rem .5rem 0 0; flex: none; }
.check { display: flex; align-items: flex-start; font-weight: 400; }
input:focus-visible, select:focus-visible, textarea:focus-visible, button:focus-visible, a:focus-visible {
  outline: 3px solid ${accent}; outline-offset: 2px; }
[aria-invalid=true] { border-color: #b3261e; }
.err { color: #b3261e; font-size: .9rem; margin: 0; }
.hint { color: #4a5a6b; font-size: .85rem; margin: 0; }
button { font: inherit; font-weight: 700; color: #fff; background: ${accent}; border: 0; border-radius: .35rem;
  padding: .7rem 1.2rem; cursor: pointer; justify-self: start; }
button[disabled] { opacity: .7; cursor: progress; }
a { color: ${accent}; text-decoration: underline; }
.status { margin: 0; font-weight: 600; }
.status.ok { color: #1d6b35; }
.status.bad { color: #b3261e; }
.hp { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
fieldset { border: 0; margin: 0; padding: 0; min-width: 0; }
@media (max-width: 30rem) { .ll { padding: .75rem; } }
`;

  // Constructed style sheets are not inline styles: a strict host-page CSP
  // (no 'unsafe-inline') lets them through; a <style> element is the fallback.
  const styled = (text, ...kids) => {
    if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(text);
      root.adoptedStyleSheets = [sheet];
      root.replaceChildren(...kids);
    } else {
      root.replaceChildren(el("style", { text }), ...kids);
    }
  };

  const fail = (message) => {
    styled(css("#0b5cad"), el("div", { class: "ll" }, el("p", { class: "status bad", role: "alert", text: message })));
  };

  fetch(`${base}/v1/widget/config?key=${encodeURIComponent(key)}`, { credentials: "omit" })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then(render)
    .catch((status) => fail(status === 403 ? t.forbidden : t.unavailable));

  function render(cfg) {
    if (cfg.origin_allowed === false) return fail(t.forbidden);
    const accent = /^#[0-9a-f]{6}$/i.test(cfg.accent_color || "") ? cfg.accent_color : "#0b5cad";
    const font = /^[\w\s,'"-]{1,100}$/.test(cfg.font || "") ? cfg.font : "";
    const show = new Set(cfg.fields || []);
    const uid = "ll" + Math.random().toString(36).slice(2, 8);
    const inputs = {};
    const field = (name, label, control, hint) => {
      control.id = `${uid}-${name}`;
      inputs[name] = control;
      const err = el("p", { class: "err", id: `${uid}-${name}-err`, hidden: true });
      const kids = [el("label", { for: control.id, text: label }), control];
      let described = err.id;
      if (hint) {
        const h = el("p", { class: "hint", id: `${uid}-${name}-hint`, text: hint });
        kids.push(h);
        described = `${h.id} ${err.id}`;
      }
      control.setAttribute("aria-describedby", described);
      return el("div", { class: "f" }, ...kids, err);
    };
    const select = (options, placeholder) => {
      const s = el("select");
      s.append(el("option", { value: "", text: placeholder }));
      for (const [v, text] of options) s.append(el("option", { value: v, text }));
      return s;
    };
    const check = (name, label) => {
      const c = el("input", { type: "checkbox", id: `${uid}-${name}` });
      inputs[name] = c;
      const err = el("p", { class: "err", id: `${uid}-${name}-err`, hidden: true });
      c.setAttribute("aria-describedby", err.id);
      const l = el("label", { class: "check", for: c.id });
      const text = el("span");
      text.append(label);
      l.append(c, text);
      return el("div", { class: "f" }, l, err);
    };

    const parts = {
      phone: () => field("phone", t.phone, el("input", { type: "tel", autocomplete: "tel", inputmode: "tel" }), t.phoneHint),
      dates: () => el("div", { class: "f" },
        el("div", { class: "row" },
          field("charter_from", t.from, el("input", { type: "date" })),
          field("charter_to", t.to, el("input", { type: "date" }))),
        check("flexible_dates", t.flexible)),
      guests: () => el("div", { class: "row" },
        field("adults", t.adults, el("input", { type: "number", min: "1", max: "60", inputmode: "numeric" })),
        field("children", t.children, el("input", { type: "number", min: "0", max: "60", inputmode: "numeric" }))),
      destination: () => field("destination", t.destination,
        (cfg.destinations || []).length ? select(cfg.destinations.map((d) => [d, d]), t.any) : el("input", { type: "text", maxlength: "200" })),
      yacht_type: () => field("yacht_type", t.yachtType, select(Object.entries(t.types), t.choose)),
      charter_type: () => field("charter_type", t.charterType, select(Object.entries(t.charters), t.choose)),
      budget: () => field("budget", `${t.budget} (${cfg.currency || "EUR"})`, el("input", { type: "number", min: "1", step: "1", inputmode: "numeric" })),
      message: () => field("message", t.message, el("textarea", { maxlength: "5000" })),
      marketing: () => check("marketing", t.marketing),
    };

    const form = el("form", { novalidate: true, "aria-label": cfg.company_name || "Inquiry" });
    form.append(el("div", { class: "row" },
      field("name", t.name, el("input", { type: "text", autocomplete: "name", required: true, maxlength: "200" })),
      field("email", t.email, el("input", { type: "email", autocomplete: "email", required: true, maxlength: "254" }))));
    for (const name of cfg.fields || []) if (parts[name] && name !== "marketing") form.append(parts[name]());
    // Consent, with the link to the company's privacy policy.
    const consentLabel = document.createDocumentFragment();
    const [before, after] = t.consent.split("{privacy}");
    consentLabel.append(before);
    if (cfg.privacy_url) consentLabel.append(el("a", { href: cfg.privacy_url, target: "_blank", rel: "noopener noreferrer", text: t.privacy }));
    else consentLabel.append(t.privacy);
    consentLabel.append(after || "");
    form.append(check("privacy", consentLabel));
    inputs.privacy.required = true;
    if (show.has("marketing")) form.append(parts.marketing());
    // A field people never see; bots fill it.
    const hp = el("input", { type: "text", name: "website", tabindex: "-1", autocomplete: "off" });
    form.append(el("div", { class: "hp", "aria-hidden": "true" }, hp));
    const button = el("button", { type: "submit", text: t.submit });
    const status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    form.append(button, status);
    styled(css(accent, font), el("div", { class: "ll" }, form));

    let idempotencyKey = null;
    let busy = false;
    form.addEventListener("input", () => { idempotencyKey = null; });

    const clearErrors = () => {
      for (const c of Object.values(inputs)) {
        c.removeAttribute("aria-invalid");
        const err = root.getElementById(`${c.id}-err`);
        if (err) { err.hidden = true; err.textContent = ""; }
      }
    };
    const showError = (name, text) => {
      const c = inputs[name] || inputs.name;
      c.setAttribute("aria-invalid", "true");
      const err = root.getElementById(`${c.id}-err`);
      if (err) { err.textContent = text; err.hidden = false; }
      return c;
    };
    // The server decides; each pointer becomes a message in the visitor's language.
    const fieldOf = (pointer) => {
      const p = pointer.replace(/^\//, "").split("/");
      if (p[0] === "consent") return ["privacy", t.badConsent];
      if (p[0] === "guests") return ["adults", t.badGuests];
      if (p[0] === "budget") return ["budget", t.invalid];
      if (p[0] === "charter_from" || p[0] === "charter_to") return [p[0], t.badDates];
      if (p[0] === "email") return ["email", t.badEmail];
      if (p[0] === "phone") return ["phone", t.badPhone];
      if (p[0] === "name") return ["name", t.required];
      return [inputs[p[0]] ? p[0] : "name", t.invalid];
    };

    const body = () => {
      const v = (n) => (inputs[n] && inputs[n].value.trim()) || undefined;
      const num = (n) => (v(n) === undefined ? undefined : Number(v(n)));
      const params = new URLSearchParams(location.search);
      const utm = {};
      for (const k of ["source", "medium", "campaign", "term", "content"]) {
        const x = params.get(`utm_${k}`);
        if (x) utm[k] = x.slice(0, 200);
      }
      let source = "website";
      try { if (document.referrer) source = new URL(document.referrer).host.slice(0, 100) || source; } catch (_) { /* keep */ }
      const b = {
        name: v("name"), email: v("email"), phone: v("phone"),
        charter_from: v("charter_from"), charter_to: v("charter_to"),
        flexible_dates: inputs.flexible_dates ? inputs.flexible_dates.checked : undefined,
        destination: v("destination"), yacht_type: v("yacht_type"), charter_type: v("charter_type"),
        message: v("message"), locale, source,
        consent: { privacy_policy: inputs.privacy.checked, marketing: inputs.marketing ? inputs.marketing.checked : false },
        form: { honeypot: hp.value, elapsed_ms: Date.now() - shownAt },
      };
      if (num("adults") !== undefined || num("children") !== undefined) b.guests = { adults: num("adults") || 0, children: num("children") || 0 };
      if (num("budget") !== undefined) b.budget = { amount: Math.round(num("budget") * 100), currency: cfg.currency || "EUR" };
      if (Object.keys(utm).length) b.utm = utm;
      return b;
    };

    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const send = async (payload) => {
      // One key per submission, reused by every retry: never two leads.
      idempotencyKey = idempotencyKey || (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
      let delay = 1000;
      for (let attempt = 1; ; attempt++) {
        let res = null;
        try {
          res = await fetch(`${base}/v1/leads`, {
            method: "POST", credentials: "omit",
            headers: { "Authorization": `Bearer ${key}`, "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
            body: JSON.stringify(payload),
          });
        } catch (_) { res = null; }
        const retryable = !res || res.status === 429 || res.status === 409 || res.status >= 500;
        if (!retryable || attempt >= 5) return res;
        const after = res && Number(res.headers.get("Retry-After"));
        await sleep(after > 0 ? Math.min(after, 30) * 1000 : delay);
        delay = Math.min(delay * 2, 8000);
      }
    };

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (busy) return;
      clearErrors();
      status.className = "status";
      status.textContent = "";
      // The server is the authority: every field is checked there, at once.
      busy = true;
      button.disabled = true;
      button.textContent = t.sending;
      try {
        const res = await send(body());
        const data = res ? await res.json().catch(() => ({})) : {};
        if (res && res.status === 201) {
          idempotencyKey = null;
          const ok = el("p", { class: "status ok", role: "status", "aria-live": "polite", tabindex: "-1", text: cfg.success_message || t.success });
          root.querySelector(".ll").replaceChildren(ok);
          ok.focus();
          host.dispatchEvent(new CustomEvent("leadline:submitted", { bubbles: true, composed: true, detail: { id: data.id } }));
          return;
        }
        let message = t.failed;
        if (res && res.status === 422 && Array.isArray(data.errors) && data.errors.length) {
          const shown = data.errors.map((e) => showError(...fieldOf(e.pointer || "")));
          message = t.fix;
          shown[0].focus();
        } else if (res && (res.status === 403 || res.status === 401)) {
          message = t.forbidden;
        }
        status.className = "status bad";
        status.textContent = message;
        host.dispatchEvent(new CustomEvent("leadline:error", { bubbles: true, composed: true, detail: { status: res ? res.status : 0, problem: data } }));
      } finally {
        busy = false;
        button.disabled = false;
        button.textContent = t.submit;
      }
    });
  }
})();
