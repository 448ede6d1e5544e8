"""Batched language detection gives py3langid's own labels (evalwatch.checks.language)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from evalwatch.checks.language import PREFIX_CHARS, classify_exact, detect_languages

# A few sentences per language and script: customer-support traffic as it arrives.
_SENTENCES: dict[str, list[str]] = {
    "en": [
        "Where is my parcel? It was due on Monday and the tracking page has not changed.",
        "I would like a refund for the second item, it arrived broken.",
        "Can you reset my password? I no longer have access to the old email address.",
    ],
    "de": [
        "Wo ist mein Paket? Es sollte am Montag kommen, aber nichts ist passiert.",
        "Ich möchte mein Abonnement kündigen und eine Rückerstattung erhalten.",
        "Die Rechnung enthält einen Fehler bei der Mehrwertsteuer.",
    ],
    "fr": [
        "Où est mon colis ? Il devait arriver lundi et le suivi n'a pas bougé.",
        "Je voudrais annuler ma commande et être remboursé rapidement.",
        "Le mot de passe ne fonctionne plus depuis la mise à jour de l'application.",
    ],
    "es": [
        "¿Dónde está mi pedido? Debía llegar ayer y todavía no tengo noticias.",
        "Quiero cambiar la dirección de envío de mi última compra.",
        "La aplicación se cierra cada vez que intento pagar con tarjeta.",
    ],
    "it": [
        "Dov'è il mio pacco? Doveva arrivare lunedì ma non è ancora arrivato.",
        "Vorrei annullare l'ordine e ricevere un rimborso completo.",
    ],
    "pt": [
        "Onde está a minha encomenda? Devia ter chegado na segunda-feira.",
        "Não consigo entrar na minha conta depois de mudar a palavra-passe.",
    ],
    "nl": [
        "Waar is mijn pakket? Het zou maandag komen maar ik heb niets ontvangen.",
        "Ik wil mijn abonnement opzeggen en mijn geld terugkrijgen.",
    ],
    "sv": ["Var är mitt paket? Det skulle komma i måndags men ingenting har hänt."],
    "da": ["Hvor er min pakke? Den skulle være kommet mandag, men intet er sket."],
    "no": ["Hvor er pakken min? Den skulle komme på mandag, men ingenting har skjedd."],
    "fi": ["Missä pakettini on? Sen piti tulla maanantaina, mutta mitään ei ole tapahtunut."],
    "pl": [
        "Gdzie jest moja paczka? Miała przyjść w poniedziałek, ale nic się nie stało.",
        "Chciałbym zwrócić towar i otrzymać pieniądze z powrotem.",
    ],
    "cs": ["Kde je můj balík? Měl přijít v pondělí, ale nic se nestalo."],
    "sk": ["Kde je môj balík? Mal prísť v pondelok, ale nič sa nestalo."],
    "hu": ["Hol van a csomagom? Hétfőn kellett volna megérkeznie, de semmi sem történt."],
    "ro": ["Unde este coletul meu? Trebuia să ajungă luni, dar nu s-a întâmplat nimic."],
    "tr": ["Kargom nerede? Pazartesi gelmesi gerekiyordu ama hiçbir şey olmadı."],
    "ru": [
        "Где моя посылка? Она должна была прийти в понедельник, но ничего не произошло.",
        "Я хочу отменить заказ и получить деньги обратно.",
    ],
    "uk": ["Де моя посилка? Вона мала прийти в понеділок, але нічого не сталося."],
    "bg": ["Къде е моят пакет? Трябваше да пристигне в понеделник, но нищо не се случи."],
    "sr": ["Где је мој пакет? Требало је да стигне у понедељак, али ништа се није десило."],
    "el": ["Πού είναι το δέμα μου; Έπρεπε να έρθει τη Δευτέρα αλλά δεν έγινε τίποτα."],
    "ar": [
        "أين طردي؟ كان من المفترض أن يصل يوم الاثنين لكن لم يحدث شيء.",
        "أريد إلغاء طلبي واسترداد المبلغ.",
    ],
    "he": ["איפה החבילה שלי? היא הייתה אמורה להגיע ביום שני אבל שום דבר לא קרה."],
    "fa": ["بسته من کجاست؟ قرار بود دوشنبه برسد اما هیچ اتفاقی نیفتاد."],
    "hi": ["मेरा पार्सल कहाँ है? इसे सोमवार को आना था लेकिन कुछ नहीं हुआ।"],
    "bn": ["আমার পার্সেল কোথায়? এটি সোমবার আসার কথা ছিল কিন্তু কিছুই হয়নি।"],
    "ta": ["என் பார்சல் எங்கே? அது திங்கட்கிழமை வர வேண்டும் ஆனால் எதுவும் நடக்கவில்லை."],
    "th": ["พัสดุของฉันอยู่ที่ไหน มันควรจะมาถึงวันจันทร์ แต่ไม่มีอะไรเกิดขึ้น"],
    "vi": ["Bưu kiện của tôi ở đâu? Nó phải đến vào thứ Hai nhưng chẳng có gì xảy ra."],
    "id": ["Di mana paket saya? Seharusnya tiba hari Senin tetapi tidak ada yang terjadi."],
    "ms": ["Di manakah bungkusan saya? Ia sepatutnya tiba pada hari Isnin."],
    "tl": ["Nasaan ang aking pakete? Dapat itong dumating noong Lunes ngunit walang nangyari."],
    "sw": ["Kifurushi changu kiko wapi? Kilipaswa kufika Jumatatu lakini hakuna kilichotokea."],
    "zh": [
        "我的包裹在哪里？它应该在星期一到达，但是什么都没有发生。",
        "我想取消订单并申请退款。",
    ],
    "ja": [
        "私の荷物はどこですか？月曜日に届くはずでしたが、何も起きていません。",
        "注文をキャンセルして返金してほしいです。",
    ],
    "ko": ["제 소포는 어디에 있나요? 월요일에 도착해야 했는데 아무 일도 일어나지 않았어요."],
    "ka": ["სად არის ჩემი ამანათი? ორშაბათს უნდა მოსულიყო."],
    "hy": ["Որտե՞ղ է իմ ծանրոցը: Այն պետք է գար երկուշաբթի:"],
    "am": ["የእኔ ጥቅል የት ነው? ሰኞ መድረስ ነበረበት።"],
}
_ODD = [
    "",
    "   ",
    "ok",
    "ok!",
    "abc",
    "???",
    "12345 67890",
    "😀😀😀",
    "👍 thanks 🙏🏽",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔣𝔯𝔞𝔨𝔱𝔲𝔯",
    "𠀀𠀁𠀂𠀃 𪜀𪜁",
    "e\u0301te\u0301 a\u0300 la plage",  # decomposed accents: NFC changes the bytes
    "CAN YOU HELP ME WITH MY ORDER PLEASE",  # all upper: py3langid lower-cases it
    "WO IST MEIN PAKET",
    "lone \ud800 surrogate in an english sentence",
    "\udcff\udc80 bytes escaped",
    "tab\tseparated\tvalues\nand new lines\r\n",
    "\x00\x01\x02 control characters here",
    "https://example.com/orders/12345?ref=mail&lang=en",
    "SELECT * FROM orders WHERE id = 42;",
    '{"order": 123, "status": "late"}',
    "a" * 3,
    "ab" * 400,
    "\u200b\u200bzero width\u200b",
    "\ufeffbom at the start of a prompt",
    "x\u0308\u0308\u0308",  # stacked combining marks
]


def _corpus() -> list[str | None]:
    """Several hundred texts: the sentences, their cuts and mixes, odd inputs, long ones."""
    rng = random.Random(15)
    sentences = [s for group in _SENTENCES.values() for s in group]
    out: list[str | None] = [None, *_ODD, *sentences]
    for s in sentences:
        words = s.split()
        cut = rng.randint(1, max(1, len(words)))
        out.append(" ".join(words[:cut]))  # short prefixes: few features, close calls
        out.append(s[: rng.randint(3, 12)])
        rng.shuffle(words)
        out.append(" ".join(words))
        out.append(s.upper())
        out.append(s + " " + rng.choice(["😀", "🙏🏽", "𝔘", "\U0001f4e6", "#1234"]))
    for _ in range(200):
        # Two languages in one text: where the two best scores come closest.
        a, b = rng.sample(sentences, 2)
        aw, bw = a.split(), b.split()
        out.append(" ".join(aw[: rng.randint(1, len(aw))] + bw[: rng.randint(1, len(bw))]))
    for _ in range(30):
        # Long texts: only the first PREFIX_CHARS characters count.
        out.append(" ".join(rng.choice(sentences) for _ in range(rng.randint(8, 40))))
    for _ in range(40):
        # Random code points from many blocks, BMP and beyond.
        out.append(
            "".join(
                chr(
                    rng.choice(
                        [
                            rng.randint(0x20, 0x24F),
                            rng.randint(0x370, 0x10FF),
                            rng.randint(0x3040, 0x9FFF),
                            rng.randint(0xAC00, 0xD7A3),
                            rng.randint(0x1F300, 0x1FAFF),
                            rng.randint(0x20000, 0x2A6DF),
                        ]
                    )
                )
                for _ in range(rng.randint(3, 80))
            )
        )
    return out


def _reference(text: str | None) -> str | None:
    """py3langid's own answer, one text at a time, from a separately loaded identifier."""
    s = (text or "").strip()
    if len(s) < 3:
        return None
    return str(_py3langid().classify(s[:PREFIX_CHARS])[0])


_IDENT: list[Any] = []


def _py3langid() -> Any:
    if not _IDENT:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENT.append(LanguageIdentifier.from_model_file(MODEL_FILE))
    return _IDENT[0]


def test_batched_detection_equals_py3langid_classify_on_a_multilingual_corpus() -> None:
    corpus = _corpus()
    assert len(corpus) > 600
    got = detect_languages(corpus)
    want = [_reference(t) for t in corpus]
    wrong = [(t, g, w) for t, g, w in zip(corpus, got, want, strict=True) if g != w]
    assert not wrong, wrong[:5]
    # The corpus does reach many languages, not just English and a default.
    assert len({w for w in want if w}) >= 30
    assert got[0] is None and got[1:4] == [None, None, None]


def test_batched_detection_does_not_depend_on_the_batch() -> None:
    corpus = [t for t in _corpus() if t]
    alone = [detect_languages([t])[0] for t in corpus[:120]]
    assert detect_languages(corpus[:120]) == alone
    rng = random.Random(3)
    shuffled = list(range(len(corpus)))
    rng.shuffle(shuffled)
    together = detect_languages(corpus)
    mixed = detect_languages([corpus[i] for i in shuffled])
    assert [together[i] for i in shuffled] == mixed


def test_classify_exact_is_py3langids_label() -> None:
    for text in ["Wo ist mein Paket? Es sollte am Montag kommen.", "Où est mon colis ?"]:
        assert classify_exact(text) == _reference(text)


@pytest.mark.parametrize("text", ["Where is my parcel? " * 100, "Где моя посылка? " * 100])
def test_only_the_prefix_is_classified(text: str) -> None:
    tail = text[:PREFIX_CHARS] + " und dann noch ganz viel deutscher Text dahinter" * 50
    assert detect_languages([tail]) == detect_languages([text[:PREFIX_CHARS]])


def test_close_calls_go_to_py3langid_and_keep_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    import evalwatch.checks.language as language

    corpus = _corpus()[:200]
    want = [_reference(t) for t in corpus]
    model = language._model()
    asked: list[str] = []
    classify = type(model.ident).classify

    def spy(self: object, text: str) -> tuple[str, float]:
        if self is model.ident:
            asked.append(text)
        return classify(self, text)

    monkeypatch.setattr(type(model.ident), "classify", spy)
    # A huge rounding allowance makes most texts close calls, classified one at a time.
    monkeypatch.setattr(language, "_U32", 1e-3)
    assert detect_languages(corpus) == want
    assert len(asked) > len(corpus) // 2
