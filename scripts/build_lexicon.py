#!/usr/bin/env python
"""Build mer_jax/metrics/data/builtin_lexicon.json, the project's own EW lexicon.

Everything below is authored in this project from the published emotion
wheels (sources in WHEEL_SOURCES) and from general English knowledge; nothing
is read from, copied from or derived from the official OV-MER lexicon files.
lemminflect (a build-time-only dependency) supplies inflections and acts as a
"is this a real English word" oracle for derivational suffix rules; the
runtime only reads the generated JSON.

  /work/venv/bin/python scripts/build_lexicon.py [--out PATH] [--check]

Structure of the JSON (consumed by ``mer_jax.metrics.lexicon.load_builtin``):
  wheels:     5 x {name, source, tree: {level1: {level2: [level3, ...]}}}
  root2words: root word -> wheel words it stands for (a wheel word -> itself;
              a synonym -> the wheel words whose synonym list contains it)
  forms:      root word -> surface forms (inflections + derivations)
  valence:    level-1 category -> +1 / 0 / -1 per wheel (sentiment default)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

VERSION = 1
OUT = Path(__file__).resolve().parents[1] / 'mer_jax' / 'metrics' / 'data' / 'builtin_lexicon.json'

WHEEL_SOURCES = {
    'plutchik': (
        'Plutchik, R. (1980). Emotion: A Psychoevolutionary Synthesis. Harper & Row; '
        'Plutchik, R. (2001). The nature of emotions. American Scientist 89(4), 344-350. '
        'Level1 = the 8 basic emotions, level2 = their intense and mild forms (inner/outer '
        'rings), level3 = the primary/secondary/tertiary dyads, each attached here to the '
        'component and intensity it is semantically closest to (our choice).'
    ),
    'parrott': (
        'Parrott, W. G. (2001). Emotions in Social Psychology: Essential Readings. '
        'Psychology Press - the primary/secondary/tertiary tree (6 primary emotions).'
    ),
    'willcox': (
        'Willcox, G. (1982). The Feeling Wheel: A tool for expanding awareness of emotions '
        'and increasing spontaneity and intimacy. Transactional Analysis Journal 12(4), '
        '274-276. 6 core feelings, 36 middle-ring words; outer-ring words attached to the '
        'adjacent middle-ring word as recalled from the published figure (approximate).'
    ),
    'robbs': (
        'Robbs, K. (c. 2018). The Feelings Wheel (7 core emotions, 2 outer words per '
        "middle word), a widely circulated revision of Willcox's wheel."
    ),
    'junto': (
        'The Junto Institute (c. 2020). The Emotion Wheel - 6 core emotions with two outer '
        "rings, built on Parrott's tree."
    ),
}

# ----------------------------------------------------------------- wheels
# level1 -> level2 -> [level3, ...]  (authored from the sources above)
WHEELS = [
    (
        'plutchik',
        {
            'joy': {'ecstasy': ['delight', 'pride'], 'serenity': ['love']},
            'trust': {'admiration': ['dominance'], 'acceptance': ['submission', 'sentimentality']},
            'fear': {'terror': ['shame'], 'apprehension': ['anxiety', 'guilt']},
            'surprise': {'amazement': ['awe', 'unbelief'], 'distraction': ['curiosity']},
            'sadness': {
                'grief': ['remorse', 'despair'],
                'pensiveness': ['pessimism', 'disapproval'],
            },
            'disgust': {'loathing': ['contempt', 'morbidness'], 'boredom': ['cynicism']},
            'anger': {'rage': ['outrage', 'aggressiveness'], 'annoyance': ['envy']},
            'anticipation': {'vigilance': [], 'interest': ['optimism', 'hope']},
        },
    ),
    (
        'parrott',
        {
            'love': {
                'affection': [
                    'adoration',
                    'fondness',
                    'liking',
                    'attraction',
                    'caring',
                    'tenderness',
                    'compassion',
                    'sentimentality',
                ],
                'lust': ['arousal', 'desire', 'passion', 'infatuation'],
                'longing': ['yearning'],
            },
            'joy': {
                'cheerfulness': [
                    'amusement',
                    'bliss',
                    'gaiety',
                    'glee',
                    'jolliness',
                    'joviality',
                    'delight',
                    'enjoyment',
                    'gladness',
                    'happiness',
                    'jubilation',
                    'elation',
                    'satisfaction',
                    'ecstasy',
                    'euphoria',
                ],
                'zest': ['enthusiasm', 'zeal', 'excitement', 'thrill', 'exhilaration'],
                'contentment': ['pleasure'],
                'pride': ['triumph'],
                'optimism': ['eagerness', 'hope'],
                'enthrallment': ['rapture'],
                'relief': ['relief'],
            },
            'surprise': {'surprise': ['amazement', 'astonishment']},
            'anger': {
                'irritation': [
                    'aggravation',
                    'agitation',
                    'annoyance',
                    'grouchiness',
                    'grumpiness',
                ],
                'exasperation': ['frustration'],
                'rage': [
                    'outrage',
                    'fury',
                    'wrath',
                    'hostility',
                    'ferocity',
                    'bitterness',
                    'hate',
                    'loathing',
                    'scorn',
                    'spite',
                    'vengefulness',
                    'dislike',
                    'resentment',
                ],
                'disgust': ['revulsion', 'contempt'],
                'envy': ['jealousy'],
                'torment': ['torment'],
            },
            'sadness': {
                'suffering': ['agony', 'hurt', 'anguish'],
                'sadness': [
                    'depression',
                    'despair',
                    'hopelessness',
                    'gloom',
                    'glumness',
                    'unhappiness',
                    'grief',
                    'sorrow',
                    'woe',
                    'misery',
                    'melancholy',
                ],
                'disappointment': ['dismay', 'displeasure'],
                'shame': ['guilt', 'regret', 'remorse'],
                'neglect': [
                    'alienation',
                    'isolation',
                    'loneliness',
                    'rejection',
                    'homesickness',
                    'defeat',
                    'dejection',
                    'insecurity',
                    'embarrassment',
                    'humiliation',
                    'insult',
                ],
                'sympathy': ['pity'],
            },
            'fear': {
                'horror': [
                    'alarm',
                    'shock',
                    'fright',
                    'terror',
                    'panic',
                    'hysteria',
                    'mortification',
                ],
                'nervousness': [
                    'anxiety',
                    'tenseness',
                    'uneasiness',
                    'apprehension',
                    'worry',
                    'distress',
                    'dread',
                ],
            },
        },
    ),
    (
        'willcox',
        {
            'mad': {
                'hurt': ['jealous', 'distant'],
                'hostile': ['sarcastic', 'aggressive'],
                'angry': ['furious', 'frustrated'],
                'selfish': ['irritated'],
                'hateful': ['resentful'],
                'critical': ['skeptical'],
            },
            'sad': {
                'guilty': ['remorseful'],
                'ashamed': ['stupid'],
                'depressed': ['inferior', 'miserable'],
                'lonely': ['isolated'],
                'bored': ['apathetic'],
                'sleepy': ['tired'],
            },
            'scared': {
                'rejected': ['discouraged'],
                'confused': ['bewildered'],
                'helpless': ['insignificant'],
                'submissive': ['inadequate'],
                'insecure': ['embarrassed'],
                'anxious': ['overwhelmed'],
            },
            'joyful': {
                'excited': ['daring', 'fascinating'],
                'sensuous': ['stimulating'],
                'energetic': ['playful'],
                'cheerful': ['amused', 'delightful'],
                'creative': ['extravagant'],
                'hopeful': ['optimistic'],
            },
            'powerful': {
                'aware': ['discerning'],
                'proud': ['successful', 'confident'],
                'respected': ['worthwhile'],
                'appreciated': ['valuable'],
                'important': [],
                'faithful': [],
            },
            'peaceful': {
                'nurturing': [],
                'trusting': ['responsive'],
                'loving': ['serene'],
                'intimate': ['sentimental'],
                'thoughtful': ['pensive'],
                'content': ['relaxed', 'thankful'],
            },
        },
    ),
    (
        'robbs',
        {
            'happy': {
                'playful': ['aroused', 'cheeky'],
                'content': ['free', 'joyful'],
                'interested': ['curious', 'inquisitive'],
                'proud': ['successful', 'confident'],
                'accepted': ['respected', 'valued'],
                'powerful': ['courageous', 'creative'],
                'peaceful': ['loving', 'thankful'],
                'trusting': ['sensitive', 'intimate'],
                'optimistic': ['hopeful', 'inspired'],
            },
            'sad': {
                'lonely': ['isolated', 'abandoned'],
                'vulnerable': ['victimized', 'fragile'],
                'despair': ['grief', 'powerless'],
                'guilty': ['ashamed', 'remorseful'],
                'depressed': ['inferior', 'empty'],
                'hurt': ['embarrassed', 'disappointed'],
            },
            'disgusted': {
                'disapproving': ['judgmental', 'embarrassed'],
                'disappointed': ['appalled', 'revolted'],
                'awful': ['nauseated', 'detestable'],
                'repelled': ['horrified', 'hesitant'],
            },
            'angry': {
                'let down': ['betrayed', 'resentful'],
                'humiliated': ['disrespected', 'ridiculed'],
                'bitter': ['indignant', 'violated'],
                'mad': ['furious', 'jealous'],
                'aggressive': ['provoked', 'hostile'],
                'frustrated': ['infuriated', 'annoyed'],
                'distant': ['withdrawn', 'numb'],
                'critical': ['skeptical', 'dismissive'],
            },
            'fearful': {
                'scared': ['helpless', 'frightened'],
                'anxious': ['overwhelmed', 'worried'],
                'insecure': ['inadequate', 'inferior'],
                'weak': ['worthless', 'insignificant'],
                'rejected': ['excluded', 'persecuted'],
                'threatened': ['nervous', 'exposed'],
            },
            'bad': {
                'bored': ['indifferent', 'apathetic'],
                'busy': ['pressured', 'rushed'],
                'stressed': ['overwhelmed', 'out of control'],
                'tired': ['sleepy', 'unfocused'],
            },
            'surprised': {
                'startled': ['shocked', 'dismayed'],
                'confused': ['disillusioned', 'perplexed'],
                'amazed': ['astonished', 'awe'],
                'excited': ['eager', 'energetic'],
            },
        },
    ),
    (
        'junto',
        {
            'love': {
                'peaceful': ['satisfied', 'relieved'],
                'tenderness': ['compassionate', 'caring'],
                'desire': ['infatuation', 'passion'],
                'longing': ['attracted', 'sentimental'],
                'affectionate': ['fondness', 'romantic'],
            },
            'fear': {
                'scared': ['frightened', 'helpless'],
                'terror': ['panic', 'hysterical'],
                'insecure': ['inferior', 'inadequate'],
                'nervous': ['worried', 'anxious'],
                'horror': ['mortified', 'dread'],
            },
            'anger': {
                'rage': ['hate', 'hostile'],
                'exasperated': ['agitated', 'frustrated'],
                'irritable': ['annoyed', 'aggravated'],
                'envy': ['resentful', 'jealous'],
                'disgust': ['contempt', 'revolted'],
            },
            'sadness': {
                'suffering': ['agony', 'hurt'],
                'sadness': ['depressed', 'sorrow'],
                'disappointed': ['dismayed', 'displeased'],
                'shameful': ['regretful', 'guilty'],
                'neglected': ['isolated', 'lonely'],
                'despair': ['grief', 'powerless'],
            },
            'surprise': {
                'stunned': ['shocked', 'dismayed'],
                'confused': ['disillusioned', 'perplexed'],
                'amazed': ['astonished', 'awe-struck'],
                'overcome': ['speechless', 'astounded'],
                'moved': ['stimulated', 'touched'],
            },
            'joy': {
                'enthralled': ['rapture', 'enchanted'],
                'elation': ['jubilation', 'euphoric'],
                'enthusiastic': ['zeal', 'excited'],
                'optimistic': ['hopeful', 'eager'],
                'proud': ['illustrious', 'triumphant'],
                'cheerful': ['jovial', 'blissful'],
                'happy': ['delighted', 'amused'],
                'content': ['pleased', 'satisfied'],
            },
        },
    ),
]

# valence of each wheel's level-1 categories (sentiment default)
VALENCE = {
    'plutchik': {
        'joy': 1,
        'trust': 1,
        'fear': -1,
        'surprise': 0,
        'sadness': -1,
        'disgust': -1,
        'anger': -1,
        'anticipation': 0,
    },
    'parrott': {'love': 1, 'joy': 1, 'surprise': 0, 'anger': -1, 'sadness': -1, 'fear': -1},
    'willcox': {'mad': -1, 'sad': -1, 'scared': -1, 'joyful': 1, 'powerful': 1, 'peaceful': 1},
    'robbs': {
        'happy': 1,
        'sad': -1,
        'disgusted': -1,
        'angry': -1,
        'fearful': -1,
        'bad': -1,
        'surprised': 0,
    },
    'junto': {'love': 1, 'fear': -1, 'anger': -1, 'sadness': -1, 'surprise': 0, 'joy': 1},
}

# ------------------------------------------------------------- synonyms
# Concept clusters of near-synonyms (authored in this project from general
# English usage, thesaurus-style).  Every member maps to every *wheel word*
# in its cluster (a member that is itself a wheel word also keeps itself).
# One cluster per line, comma separated.
CLUSTERS = """
happy, happiness, joy, joyful, joyous, glad, gladness, merry, jolly, jolliness, elated, upbeat, chipper, in good spirits, good mood, overjoyed
cheerful, cheerfulness, cheery, sunny, lighthearted, light-hearted, bright, buoyant, jovial, joviality, gaiety, gay, jaunty, happy
delight, delighted, delightful, pleased, thrilled, tickled, glee, gleeful, joy, joyful, happy
ecstasy, ecstatic, euphoria, euphoric, bliss, blissful, elation, jubilation, jubilant, exultant, exuberant, overjoyed, rapture, rapturous, on cloud nine, exhilaration, exhilarated
pleasure, pleasant, pleasurable, enjoyment, enjoy, enjoying, gratified, gratification, pleased
content, contentment, contented, satisfied, satisfaction, fulfilled, fulfillment, gratified, pleased
amused, amusement, amusing, humorous, humor, humour, funny, joking, jokey, witty, comical, laughing, laughter, entertained, playful
playful, playfulness, frisky, cheeky, mischievous, naughty, teasing, jesting, sportive, impish, coquettish, flirtatious, flirty
excited, excitement, exciting, thrilled, thrill, eager, enthusiastic, enthusiasm, animated, exhilaration, stimulated, pumped, fired up, agog
eager, eagerness, keen, avid, impatient to, looking forward, anticipation, anticipating, expectant, expectation, anticipatory
enthusiastic, enthusiasm, zeal, zealous, zest, zestful, ardent, fervent, fervor, passionate, energetic, vigorous, lively, spirited, dynamic
energetic, energy, vigorous, lively, vibrant, active, peppy, dynamic, invigorated, spirited
hope, hopeful, hopefulness, optimism, optimistic, confident, expectant, buoyant, looking forward, anticipation
proud, pride, self-satisfied, dignified, honored, honoured, triumph, triumphant, accomplished, successful, victorious, illustrious, glorious
confident, confidence, self-assured, assured, self-confident, sure, certain, secure, bold, courageous, determined, resolute, firm, powerful
courageous, courage, brave, bravery, bold, boldness, daring, fearless, valiant, heroic, gutsy, audacious
powerful, power, strong, strength, empowered, mighty, potent, in control, dominant, dominance, authoritative, commanding
successful, success, accomplished, achieving, triumphant, victorious, winning, prosperous
important, significant, valued, valuable, worthwhile, worthy, respected, esteemed, appreciated, recognized, acknowledged
respected, respect, esteemed, honored, admired, valued, appreciated, accepted, recognized
accepted, acceptance, included, welcomed, embraced, belonging, approved
appreciated, appreciative, appreciation, grateful, gratitude, thankful, thankfulness, thanks, obliged, indebted
thankful, thankfulness, grateful, gratefulness, gratitude, appreciative, obliged, indebted
faithful, faith, loyal, loyalty, devoted, devotion, committed, dedicated, steadfast, trusting
trust, trusting, trustful, trustfulness, confiding, reliant, faith, believing, credulous
aware, awareness, conscious, mindful, attentive, alert, observant, perceptive, discerning, insightful
interested, interest, curious, curiosity, intrigued, inquisitive, fascinated, fascination, engaged, attentive, absorbed, captivated
curious, curiosity, inquisitive, inquiring, nosy, intrigued, wondering, questioning, interested
fascinating, fascinated, fascination, captivated, enthralled, enthrallment, spellbound, enchanted, charmed, mesmerized, entranced, rapt
creative, creativity, inventive, imaginative, inspired, innovative, artistic, original
inspired, inspiration, motivated, motivation, stimulated, uplifted, encouraged
sensuous, sensual, sensuality, aroused, arousal, lustful, lust, desire, desirous, sexy, horny, seductive
love, loving, lovely, beloved, adoration, adoring, adore, affection, affectionate, fondness, fond, tender, tenderness, warm, warmth, devoted, caring, romantic, amorous, infatuation, infatuated
affection, affectionate, fond, fondness, warm, warmhearted, loving, tender, cuddly, doting, attached, attachment
caring, care, kind, kindness, considerate, nurturing, nurture, protective, solicitous, concerned, warm, gentle, tender, compassionate
compassion, compassionate, sympathy, sympathetic, empathy, empathetic, empathic, pity, pitying, commiseration, understanding, merciful, kindhearted
romantic, romance, amorous, passionate, lovestruck, smitten, infatuated, infatuation, attracted, attraction
attracted, attraction, drawn, allured, tempted, charmed, captivated, liking, like
liking, like, fondness, partiality, enjoy
desire, desiring, want, wanting, craving, yearning, yearn, longing, eager, hungry, wish, wishful, lust
longing, yearning, yearn, pining, nostalgia, nostalgic, homesick, homesickness, wistful, wistfulness, missing, sentimental, sentimentality, reminiscent
sentimental, sentimentality, nostalgic, wistful, mushy, emotional, moved, touched, tender
intimate, intimacy, close, closeness, connected, connection, bonded, familiar, sensitive
sensitive, sensitivity, delicate, thin-skinned, touchy, vulnerable, tender, emotional
peaceful, peace, calm, calmness, tranquil, tranquility, tranquillity, serene, serenity, placid, composed, composure, at ease, at peace, untroubled, quiet, still, relaxed
relaxed, relaxation, relax, at ease, easygoing, laid-back, comfortable, comfort, loose, unwound, leisurely, calm, rested
relieved, relief, reassured, eased, unburdened, comforted, relaxed, thankful
serenity, serene, calm, tranquil, peaceful, composed, collected, unruffled, placid
free, freedom, liberated, unrestrained, unconstrained, carefree, independent, uninhibited
thoughtful, thoughtfulness, pensive, pensiveness, reflective, contemplative, meditative, musing, introspective, deep in thought
responsive, receptive, open-minded, willing, amenable, attentive
nurturing, nurture, caring, supportive, protective, motherly, fatherly, parental
valued, valuable, cherished, treasured, prized, important, worthwhile
surprise, surprised, surprising, startled, startle, astonished, astonishment, amazed, amazement, astounded, stunned, taken aback, shocked, shock, flabbergasted, dumbfounded, awestruck, wonder, wonderment, incredulous, unexpected
amazed, amazement, amazing, astonished, astonishment, astounded, astounding, awe, awed, awe-struck, awestruck, in awe, wonder, wondrous, marvel, marveling, stunned, impressed
awe, awed, awe-struck, awestruck, reverence, reverent, wonder, admiration, amazed
admiration, admire, admiring, admired, respect, esteem, regard, appreciation, reverence
startled, startle, jumpy, shocked, jolted, alarmed, surprised, frightened, spooked
shocked, shock, shocking, stunned, appalled, horrified, dismayed, staggered, stupefied, traumatized, aghast, thunderstruck, speechless, startled
stunned, stun, dazed, stupefied, speechless, dumbstruck, dumbfounded, thunderstruck, flabbergasted, shocked, astounded
speechless, speechlessness, wordless, tongue-tied, mute, dumbfounded, lost for words, at a loss for words, stunned
overcome, overcome with emotion, moved, touched
moved, touched, stirred, affected, emotional, heartwarmed, heartwarming, tearful, sentimental
confused, confusion, confusing, puzzled, puzzlement, perplexed, perplexity, bewildered, bewilderment, baffled, bafflement, mystified, muddled, disoriented, lost, uncertain, unsure, doubtful, at a loss, befuddled, dazed
disillusioned, disillusionment, disenchanted, disenchantment, jaded, cynical, disabused, let down, disappointed
distraction, distracted, absent-minded, inattentive, preoccupied, unfocused, scattered, diverted
unfocused, distracted, scattered, absent-minded, inattentive, spaced out, foggy
skeptical, sceptical, skepticism, scepticism, doubt, doubtful, doubting, dubious, suspicious, suspicion, suspect, distrust, distrustful, mistrust, mistrustful, disbelief, disbelieving, unbelief, unconvinced, incredulous, questioning, wary, leery, cynical, cynicism, uncertain
cynicism, cynical, jaded, distrustful, sardonic, pessimistic, skeptical, misanthropic
unbelief, disbelief, incredulity, incredulous, unbelieving, doubt, doubtful, skeptical
sad, sadness, unhappy, unhappiness, sorrow, sorrowful, sorry, down, downcast, blue, gloomy, gloom, glum, glumness, melancholy, melancholic, dejected, dejection, despondent, crestfallen, heartbroken, heartbreak, heavy-hearted, low, mournful, tearful, upset, woeful, woe, dispirited, forlorn, depressed, miserable, misery
grief, grieving, grieve, grief-stricken, bereaved, bereavement, mourning, mournful, heartbroken, heartbreak, sorrow, anguish, despair
depressed, depression, depressive, despondent, dejected, down, low, hopeless, miserable, gloomy, melancholy, dispirited, discouraged, demoralized, empty
despair, despairing, desperate, desperation, hopeless, hopelessness, despondent, despondency, disconsolate, forlorn, inconsolable, defeated
hopelessness, hopeless, despair, desperate, futile, resigned, resignation, defeatist, powerless, helpless
miserable, misery, wretched, wretchedness, unhappy, woeful, pitiful, sorrowful, suffering, agonized
suffering, suffer, pain, painful, in pain, hurt, hurting, agony, agonized, anguish, anguished, torment, tormented, torture, tortured, distress, distressed, afflicted, aching, heartache
hurt, hurting, wounded, injured, pained, aggrieved, wronged, offended, stung, bruised, upset, sore, heartbroken, suffering
disappointed, disappointment, disappointing, let down, letdown, disheartened, dissatisfied, dissatisfaction, discontent, discontented, disgruntled, displeased, displeasure, unsatisfied, dismayed, dismay, crestfallen, disillusioned
displeased, displeasure, dissatisfied, dissatisfaction, discontent, discontented, disgruntled, unhappy, disapproving, disapproval, unsatisfied, complaining, complaint, grumbling, unimpressed, disappointed
dismay, dismayed, consternation, disconcerted, distressed, disheartened, appalled, disappointed
disapproval, disapproving, disapprove, disapproved, critical, censorious, reproachful, reproach, condemning, objecting, objection, frowning, unfavorable, judgmental, displeased
judgmental, judging, critical, censorious, condemning, hypercritical, disapproving, faultfinding, moralistic
critical, criticism, criticizing, criticise, criticize, judgmental, faultfinding, nitpicking, disparaging, disapproving, blaming, accusatory, reproachful
dismissive, dismissing, contemptuous, disdainful, scornful, disregarding, indifferent, brushing off, condescending
shame, shamed, ashamed, shameful, humiliated, humiliation, mortified, mortification, disgraced, disgrace, dishonored, embarrassed, abashed, sheepish, chagrined
guilt, guilty, guilt-ridden, culpable, blameworthy, remorse, remorseful, contrite, contrition, penitent, repentant, regret, regretful, sorry, apologetic, conscience-stricken
regret, regretful, regretting, rue, rueful, sorry, apologetic, remorse, remorseful, contrite, repentant, penitent, self-reproach
embarrassed, embarrassment, embarrassing, awkward, awkwardness, sheepish, self-conscious, abashed, flustered, red-faced, uncomfortable, discomfited, chagrined, shy, bashful, mortified, ashamed
shy, shyness, bashful, timid, timidity, coy, reserved, diffident, self-conscious, withdrawn, introverted, sheepish, embarrassed
humiliated, humiliation, humiliating, degraded, debased, demeaned, belittled, disgraced, mortified, ashamed, shamed, insulted, ridiculed, disrespected
insult, insulted, offended, offense, affronted, slighted, snubbed, disrespected, belittled, humiliated
disrespected, disrespect, slighted, belittled, disregarded, undervalued, dismissed, insulted, demeaned
ridiculed, ridicule, mocked, teased, taunted, derided, laughed at, made fun of, humiliated, jeered
inferior, inferiority, inadequate, inadequacy, insufficient, unworthy, lesser, second-rate, incompetent, not good enough, insecure, worthless, self-deprecating, low self-esteem
inadequate, inadequacy, insufficient, incapable, incompetent, unqualified, ineffective, not good enough, inferior
worthless, worthlessness, useless, valueless, no good, good-for-nothing, insignificant, inferior, unworthy
insignificant, insignificance, unimportant, trivial, negligible, invisible, overlooked, worthless, inferior
stupid, stupidity, foolish, foolishness, silly, dumb, idiotic, ridiculous, absurd, embarrassed
weak, weakness, feeble, frail, fragile, powerless, helpless, vulnerable, exhausted, drained, faint
fragile, fragility, delicate, frail, breakable, brittle, vulnerable, weak, sensitive
vulnerable, vulnerability, exposed, defenseless, defenceless, unprotected, helpless, powerless, weak, fragile, insecure, susceptible
helpless, helplessness, powerless, powerlessness, defenseless, defenceless, impotent, incapable, resigned, trapped, stuck, hopeless, at a loss
powerless, powerlessness, helpless, impotent, weak, defenseless, incapable
victimized, victim, persecuted, oppressed, bullied, wronged, mistreated, abused, exploited, picked on, targeted
persecuted, persecution, harassed, hunted, oppressed, tormented, victimized, bullied
rejected, rejection, spurned, rebuffed, unwanted, unloved, excluded, shunned, snubbed, dismissed, cast aside, abandoned, unaccepted, left out
excluded, exclusion, left out, shut out, ostracized, ostracised, shunned, isolated, marginalized, alienated, rejected
lonely, loneliness, lonesome, alone, solitary, friendless, isolated, isolation, forsaken, abandoned, alienated, alienation, cut off, neglected, lone
isolated, isolation, alone, secluded, cut off, separated, detached, solitary, withdrawn, alienated, lonely
alienated, alienation, estranged, disconnected, detached, distant, isolated, excluded, outsider, lonely
abandoned, abandonment, deserted, forsaken, left, dumped, neglected, rejected, lonely
neglect, neglected, ignored, overlooked, forgotten, uncared for, unattended, abandoned, left out, unnoticed
homesickness, homesick, nostalgic, missing home, longing
defeat, defeated, beaten, conquered, vanquished, overcome, crushed, deflated, discouraged, beaten down, resigned, losing
discouraged, discouragement, disheartened, demoralized, dispirited, deflated, downhearted, dejected, defeated, despondent, unmotivated
dejection, dejected, downcast, despondent, crestfallen, dispirited, disheartened, discouraged, down
empty, emptiness, hollow, void, numb, vacant, blank, hollow inside, unfulfilled, meaningless
numb, numbness, numbed, deadened, unfeeling, desensitized, emotionless, blank, frozen, empty, detached
apathetic, apathy, indifferent, indifference, uninterested, unconcerned, unmoved, listless, lethargic, passive, dispassionate, disinterested, nonchalant, impassive, detached, uncaring, unresponsive, cold, emotionless
indifferent, indifference, uninterested, unconcerned, nonchalant, casual, detached, aloof, uncaring, disinterested, apathetic
bored, boredom, boring, uninterested, weary, tedious, jaded, fed up, sick of, restless, disengaged, listless
tired, tiredness, fatigue, fatigued, exhausted, exhaustion, weary, weariness, worn out, drained, sleepy, drowsy, spent, burnt out, burned out, lethargic, lethargy
sleepy, sleepiness, drowsy, drowsiness, dozy, lethargic, sluggish, tired
withdrawn, withdrawal, reserved, introverted, aloof, detached, distant, reticent, uncommunicative, closed off, unsociable
distant, distance, aloof, detached, remote, cold, cool, reserved, withdrawn, standoffish, unapproachable, estranged
busy, occupied, preoccupied, swamped, rushed, hectic, overworked, engaged
pressured, pressure, under pressure, stressed, strained, burdened, rushed, hurried, pushed, harried, hard-pressed
rushed, rush, hurried, hasty, harried, pressed for time, hectic
stressed, stress, stressful, strained, strain, tense, tension, under pressure, pressured, overloaded, frazzled, overwrought, burdened, harried
overwhelmed, overwhelm, overwhelming, overloaded, swamped, snowed under, inundated, overburdened, stressed, out of control, overcome
out of control, uncontrolled, unruly, frantic, chaotic, hysterical, overwhelmed, losing control
fear, fearful, afraid, scared, frightened, fright, terrified, terror, petrified, alarmed, horrified, panicky, panicked, fearfulness, apprehensive, timid, timorous, spooked, intimidated, dread
scared, scary, afraid, frightened, fearful, spooked, startled, alarmed, terrified, petrified
terror, terrified, terrifying, petrified, horrified, panic-stricken, panicked, panic, scared stiff, scared to death, dread, horror
horror, horrified, horrible, horrifying, horror-stricken, terror, dread, aghast, shock
panic, panicked, panicky, panic-stricken, frantic, frenzied, hysterical, hysteria, alarmed, terrified, freaked out
hysteria, hysterical, frantic, frenzied, frenzy, overwrought, uncontrolled, wild, panic
alarm, alarmed, alarming, startled, frightened, scared, fearful, panic, unnerved, shaken, perturbed
dread, dreading, dreadful, apprehension, apprehensive, foreboding, trepidation, fearful, fear, afraid
apprehension, apprehensive, anxious, anxiety, uneasy, uneasiness, worried, nervous, fearful, trepidation, misgiving, foreboding, wary
anxious, anxiety, anxiousness, apprehensive, uneasy, uneasiness, fretful, ill at ease, unsettled, worried, nervous, tense, on edge, jittery, restless, troubled, disquiet, disquieted
nervous, nervousness, jittery, jumpy, edgy, on edge, tense, tenseness, tension, uptight, antsy, fidgety, anxious, uneasy, nervy, flustered, shaky, skittish
worried, worry, worrying, concerned, concern, troubled, fretting, fretful, uneasy, anxious, distressed, preoccupied, apprehensive
tenseness, tense, tension, tight, strained, stiff, nervous, uptight, stressed, on edge
uneasiness, uneasy, unease, uncomfortable, discomfort, disquiet, restless, unsettled, ill at ease, awkward, anxious, worried
distress, distressed, upset, troubled, disturbed, anguished, shaken, worried, suffering, in distress
insecure, insecurity, unsure, uncertain, unconfident, self-doubt, self-doubting, diffident, hesitant, vulnerable, unstable, inferior
hesitant, hesitation, hesitating, hesitate, reluctant, reluctance, unwilling, uncertain, unsure, wavering, indecisive, tentative, cautious, doubtful, timid, ambivalent, conflicted
threatened, threat, menaced, endangered, intimidated, bullied, under threat, unsafe, at risk, vulnerable, frightened
exposed, exposure, unprotected, vulnerable, defenseless, naked, uncovered, revealed
submission, submissive, submissiveness, obedient, obedience, compliant, docile, meek, yielding, deferential, subservient, passive, resigned
submissive, submission, meek, obedient, docile, compliant, passive, subservient, timid
bewildered, bewilderment, baffled, befuddled, confused, perplexed, puzzled, stumped, disoriented, mystified
perplexed, perplexity, puzzled, baffled, confused, mystified, bewildered, stumped, nonplussed
anger, angry, angered, mad, irate, furious, fury, enraged, rage, wrath, wrathful, cross, heated, incensed, livid, outraged, fuming, seething, infuriated, irritated, annoyed, indignant, resentful, hostile, upset, pissed off, vexed, riled
mad, angry, furious, crazy, livid, irate, cross
rage, raging, enraged, furious, fury, wrath, wrathful, livid, seething, fuming, berserk, incensed, infuriated, outrage, outraged, violent
fury, furious, furiously, enraged, livid, raging, seething, incensed, wrath, irate
infuriated, infuriate, infuriating, enraged, incensed, maddened, furious, exasperated, outraged
outrage, outraged, outrageous, indignant, indignation, incensed, scandalized, affronted, appalled, shocked, infuriated, furious
indignant, indignation, resentful, offended, affronted, aggrieved, disgruntled, outraged, piqued, wronged, unfair
annoyance, annoyed, annoying, irritation, irritated, irritating, irked, irritable, vexed, vexation, bothered, exasperated, peeved, miffed, aggravated, aggravation, nettled, displeased, impatient, impatience, cranky, grumpy, testy, grouchy
irritable, irritability, touchy, cranky, grumpy, grouchy, testy, crabby, cantankerous, short-tempered, bad-tempered, snappy, peevish, prickly, moody, impatient, irascible
grumpiness, grumpy, grouchy, grouchiness, cranky, crankiness, crabby, sulky, sullen, surly, grumbling, complaining, moody, bad-tempered
frustration, frustrated, frustrating, thwarted, stymied, foiled, hindered, exasperated, exasperation, annoyed, discouraged, defeated, stuck, fed up, impatient
exasperation, exasperated, exasperating, fed up, out of patience, at wits end, frustrated, infuriated, annoyed
agitation, agitated, restless, restlessness, flustered, stirred up, worked up, riled, ruffled, unsettled, perturbed, disturbed, impatient, impatience, fidgety, uneasy
hostile, hostility, antagonistic, antagonism, aggressive, belligerent, combative, confrontational, unfriendly, adversarial, bellicose, argumentative, defiant, defiance, hateful
aggressive, aggression, aggressiveness, combative, belligerent, violent, pugnacious, confrontational, militant, attacking, hostile, threatening, domineering, forceful
provoked, provocation, goaded, incited, baited, triggered, angered, riled up
hate, hatred, hateful, hating, loathe, loathing, detest, detestation, detestable, despise, abhor, abhorrence, abhorrent, odium, animosity, enmity, spite, spiteful, malice, malicious, vindictive, vengeful, vengefulness, hostility
loathing, loathe, loathsome, revulsion, repulsion, repugnance, abhorrence, disgust, detestation, hate, hatred
dislike, disliking, aversion, distaste, antipathy, disfavor, disapproval, reluctance, unfriendliness
resentment, resentful, resent, bitter, bitterness, embittered, grudge, grudging, rancor, sour, aggrieved, indignant, envious, jealous, begrudging
bitterness, bitter, embittered, acrimonious, acrimony, sour, rancorous, resentful, jaded, cynical
spite, spiteful, malice, malicious, mean, vindictive, nasty, vengeful, petty, cruel
vengefulness, vengeful, vengeance, revenge, retaliatory, vindictive, unforgiving, spiteful
scorn, scornful, contempt, contemptuous, disdain, disdainful, derision, derisive, sneering, sneer, mockery, mocking, mock, condescending, condescension, haughty, arrogant, supercilious, dismissive
contempt, contemptuous, scorn, scornful, disdain, disdainful, disrespect, disrespectful, condescending, condescension, contemptible, despise, despising, sneering, dismissive, arrogant
sarcastic, sarcasm, mocking, mockery, mock, ironic, irony, sardonic, snide, caustic, biting, cutting, wry, derisive, derision, ridiculing, teasing, taunting, facetious
disgust, disgusted, disgusting, revulsion, revolted, repulsed, repelled, repugnance, sickened, nauseated, nausea, grossed out, appalled, abhorrence, distaste, loathing, aversion
revolted, revolting, repulsed, repulsive, repelled, repellent, sickened, nauseated, disgusted, grossed out
repelled, repel, repulsed, repulsion, put off, turned off, disgusted, averse, revolted
nauseated, nausea, nauseous, sick, sickened, queasy, disgusted, revolted
appalled, appalling, horrified, shocked, aghast, dismayed, outraged, disgusted, scandalized
awful, terrible, dreadful, horrible, lousy, miserable, rotten, bad, unwell, sick, detestable
detestable, detested, loathsome, despicable, hateful, odious, abhorrent, repugnant, vile
morbidness, morbid, morbidity, gruesome, macabre, ghoulish, dark, grim
bad, unwell, lousy, poorly, upset, rotten, awful
envy, envious, envying, jealous, jealousy, covetous, covet, resentful, begrudging, green with envy, green-eyed
jealous, jealousy, envious, envy, possessive, insecure, distrustful, resentful, green-eyed
betrayed, betrayal, deceived, cheated, double-crossed, backstabbed, let down, fooled, tricked, duped, misled
let down, letdown, disappointed, failed, abandoned, betrayed, disillusioned
violated, violation, wronged, abused, defiled, invaded, trespassed, mistreated, exploited
torment, tormented, tormenting, tortured, torture, anguish, anguished, agony, agonized, suffering, plagued, haunted, harrowed
agony, agonized, agonizing, anguish, anguished, torment, tormented, pain, suffering, excruciating, heartache
anguish, anguished, agony, agonized, torment, heartache, heartbreak, grief, pain, suffering, distress, despair
woe, woeful, sorrow, sorrowful, misery, grief, heartache, distress, sadness
melancholy, melancholic, wistful, moody, somber, sombre, doleful, sad, blue, gloomy, brooding, forlorn
gloom, gloomy, dismal, bleak, somber, sombre, morose, dour, glum, depressed, downcast, sullen
pessimism, pessimistic, gloomy, cynical, defeatist, fatalistic, hopeless, bleak, doubtful
remorse, remorseful, regret, regretful, guilt, guilty, contrite, contrition, penitent, repentant, sorry, apologetic, rueful, self-reproach
mortification, mortified, humiliated, humiliation, embarrassed, ashamed, shamed, chagrined
pity, pitying, sympathy, sympathetic, compassion, compassionate, sorry for, commiseration, pitiful, empathy, concern
sympathy, sympathetic, sympathize, compassion, compassionate, empathy, empathetic, understanding, pity, condolence, supportive, caring, concerned
tenderness, tender, gentle, gentleness, soft, softhearted, warm, affectionate, loving, caring, kind, mild, sweet
adoration, adore, adoring, worship, worshipful, idolize, devotion, devoted, love, admiration, reverence
infatuation, infatuated, smitten, besotted, enamored, enamoured, lovestruck, crush, obsessed, captivated, head over heels
passion, passionate, ardor, ardent, fervor, fervent, intense, intensity, zeal, enthusiasm, desire, lust
lust, lustful, desire, desirous, craving, passion, lechery, horny, libido, arousal, aroused
arousal, aroused, turned on, titillated, lust, desire
vigilance, vigilant, watchful, alert, wary, attentive, on guard, cautious, careful, guarded, observant
anticipation, anticipating, anticipate, anticipatory, expectation, expectant, expecting, awaiting, looking forward, eager, hopeful, suspense
optimism, optimistic, hopeful, hope, upbeat, sanguine, confident, bullish, cheerful, buoyant, rosy
acceptance, accepting, accept, receptive, tolerant, tolerance, resigned, resignation, welcoming, approving, approval
sentimentality, sentimental, nostalgic, nostalgia, mawkish, schmaltzy, soppy, tender, emotional
dominance, dominant, domineering, controlling, bossy, overbearing, authoritative, commanding, powerful, superior, assertive, assertiveness
thrill, thrilled, thrilling, excitement, excited, exhilarated, electrified
triumph, triumphant, triumphal, victorious, victory, winning, exultant, jubilant, proud, successful, glorious
satisfaction, satisfied, satisfying, content, contented, fulfilled, gratified, pleased
rapture, rapturous, ecstasy, ecstatic, bliss, euphoria, transported, enraptured, elation
enchanted, enchantment, charmed, delighted, captivated, enthralled, bewitched, spellbound, entranced
enthralled, enthrallment, captivated, fascinated, spellbound, gripped, absorbed, riveted, engrossed, enchanted
daring, dare, bold, adventurous, audacious, brave, fearless, venturesome, reckless, courageous
stimulating, stimulated, invigorating, invigorated, exciting, energizing, inspiring, stirring
extravagant, extravagance, lavish, flamboyant, excessive, indulgent, exuberant
illustrious, distinguished, eminent, celebrated, famous, renowned, esteemed, glorious, proud
jovial, joviality, jolly, genial, convivial, merry, good-humored, cheerful, hearty
gaiety, gay, merriment, mirth, mirthful, merry, festive, cheerfulness, glee
zeal, zealous, zest, fervor, ardor, passion, enthusiasm, eagerness, gusto, verve, relish
eagerness, eager, keenness, keen, avidity, avid, impatience, enthusiasm, zeal, anticipation
aggravation, aggravated, aggravate, annoyance, irritation, exasperation, bothered, provoked, irked, vexed
ferocity, ferocious, fierce, fierceness, savage, savagery, vicious, brutal, violent, wild
wrath, wrathful, rage, fury, anger, ire, irate, indignation, vengeance
jolliness, jolly, merry, cheerful, jovial, happy
gladness, glad, happy, pleased, joyful, cheerful
glumness, glum, gloomy, morose, sullen, dour, downcast, sad
unhappiness, unhappy, sadness, sad, misery, sorrow, discontent, dissatisfaction, upset
homesickness, homesick, longing, nostalgia
insecurity, insecure, self-doubt, unsure, uncertain, anxiety, vulnerability, diffidence
rejection, rejected, rebuff, refusal, dismissal, spurned, exclusion
isolation, isolated, solitude, seclusion, loneliness, separation, alienation
humiliation, humiliated, degradation, shame, embarrassment, mortification, disgrace, indignity
shock, shocked, jolt, blow, upset, trauma, traumatized, startled, stunned, dismay
fright, frightened, scare, scared, alarm, panic, terror, fear, dread
hope, hoping, hopeful, wishful, aspiration, aspiring, optimistic, longing, expectant
liking, fondness, affection, inclination, taste, partiality, appreciation
caring, concerned, concern, attentive, considerate, compassionate, protective, warm
cheeky, cheekiness, impudent, impertinent, sassy, saucy, insolent, mischievous, playful, teasing, flippant, naughty
inquisitive, inquisitiveness, curious, inquiring, prying, nosy, questioning, probing
valuable, valued, precious, worthy, prized, useful, important
worthwhile, worthy, worth it, valuable, meaningful, rewarding, useful, fulfilled
discerning, discernment, perceptive, insightful, astute, shrewd, wise, judicious, aware
selfish, selfishness, self-centered, self-centred, egotistic, egotistical, self-absorbed, self-serving, greedy, egocentric
hateful, hate, hatred, spiteful, malicious, malevolent, hostile, loathing, vindictive
guilty, guilt, culpable, remorseful, sorry, blameworthy, ashamed, conscience-stricken, self-reproachful
ashamed, shame, shamed, embarrassed, humiliated, mortified, sheepish, abashed, guilty, disgraced, red-faced
sensitive, oversensitive, hypersensitive, touchy, emotional, delicate, thin-skinned
loving, love, caring, affectionate, warm, tender, devoted, fond, adoring, kind
trusting, trust, trustful, unsuspecting, credulous, faithful, confiding, believing, naive
content, contented, contentment, satisfied, at peace, fulfilled, comfortable, pleased, serene
peaceful, peace, peacefulness, calm, tranquil, serene, harmonious, restful, untroubled, quiet
thankful, grateful, appreciative, obliged, indebted, gratitude
eager, impatient, anxious to, itching, keen, raring, champing at the bit
disappointed, disappointment, disillusioned, frustrated, let down, dissatisfied, saddened, disheartened
dismayed, dismay, disheartened, discouraged, distressed, appalled, disconcerted
frightened, scared, afraid, fearful, terrified, alarmed, panicky, startled, spooked, petrified
""".strip()

# Word families for derivation that suffix rules cannot reach (irregular or
# multi-step).  Every member becomes a surface form of every other member.
FAMILIES = """
anger angry angrily angered angering
fear afraid fearful fearfully fearfulness fears feared fearing
anxiety anxious anxiously anxiousness anxieties
jealousy jealous jealously jealousies
pride proud proudly
joy joyful joyfully joyous joyously joyfulness joys
love loving lovingly loved loves
grief grieve grieving grieved grieves
shame ashamed shamed shameful shamefully
guilt guilty guiltily
envy envious enviously envied
hate hatred hateful hating hated hates
disgust disgusted disgusting disgustedly
horror horrified horrifying horrify horrible
terror terrified terrify terrifying
surprise surprised surprising surprisingly
despair desperate desperation desperately despairing
humility humble humbled
misery miserable miserably
panic panicked panicky panicking
passion passionate passionately
compassion compassionate compassionately
enthusiasm enthusiastic enthusiastically
optimism optimistic optimistically
pessimism pessimistic pessimistically
sarcasm sarcastic sarcastically
skepticism skeptical skeptically sceptical scepticism
cynicism cynical cynically
melancholy melancholic
nostalgia nostalgic
ecstasy ecstatic ecstatically
euphoria euphoric
apathy apathetic apathetically
hysteria hysterical hysterically
hostility hostile
gratitude grateful gratefully
contempt contemptuous contemptuously
rage enraged raging
fury furious furiously
boredom bored boring
awe awed awestruck awe-struck awesome
serenity serene serenely
tranquility tranquil tranquillity
vigilance vigilant
dominance dominant dominate dominating
submission submissive submit
aggression aggressive aggressively aggressiveness
curiosity curious curiously
sympathy sympathetic sympathize sympathise
empathy empathetic empathic
energy energetic energetically
courage courageous courageously
confidence confident confidently
success successful successfully
freedom free freely
peace peaceful peacefully
intimacy intimate intimately
vulnerability vulnerable
fragility fragile
inferiority inferior
creativity creative creatively
importance important
anguish anguished
agony agonized agonizing agonised
woe woeful woefully
gloom gloomy gloomily
zeal zealous zealously
glee gleeful gleefully
bliss blissful blissfully
cheer cheerful cheerfully cheery
delight delighted delightful delightfully
relief relieved relieve
rapture rapturous
triumph triumphant triumphantly
satisfaction satisfied satisfying satisfy
pleasure pleased pleasing please pleasant pleasurable
amusement amused amusing amuse
elation elated
jubilation jubilant
excitement excited exciting excite excitedly
eagerness eager eagerly
longing longed
lust lustful
desire desirous desired
infatuation infatuated
arousal aroused arouse
attraction attracted attract
affection affectionate affectionately
fondness fond fondly
tenderness tender tenderly
adoration adore adoring adored
sentimentality sentimental sentimentally
contentment content contented
loneliness lonely lonesome
isolation isolated isolate
alienation alienated alienate
rejection rejected reject
humiliation humiliated humiliate humiliating
insecurity insecure
dejection dejected
defeat defeated
neglect neglected
insult insulted insulting
torment tormented tormenting
spite spiteful spitefully
scorn scornful scornfully
wrath wrathful
vengefulness vengeful vengeance
bitterness bitter bitterly
resentment resentful resent resented resentfully
annoyance annoyed annoying annoy
irritation irritated irritating irritate irritable irritability
frustration frustrated frustrating frustrate
exasperation exasperated exasperating exasperate
agitation agitated agitate
aggravation aggravated aggravating aggravate
grouchiness grouchy
grumpiness grumpy grumpily
sorrow sorrowful sorrowfully
depression depressed depressing depress
dismay dismayed
distress distressed distressing
dread dreaded dreading dreadful
worry worried worrying worries worriedly
tension tense tenseness tensely
unease uneasy uneasiness uneasily
apprehension apprehensive apprehensively
nervousness nervous nervously
fright frightened frighten frightening
alarm alarmed alarming
shock shocked shocking
mortification mortified mortify
embarrassment embarrassed embarrassing embarrass
disappointment disappointed disappointing disappoint
displeasure displeased displease
disapproval disapproving disapprove disapproved
regret regretful regretfully regretted regretting
remorse remorseful remorsefully
pity pitiful pitying pitied
amazement amazed amazing amaze
astonishment astonished astonishing astonish
confusion confused confusing confuse
bewilderment bewildered bewildering
perplexity perplexed perplexing
disillusionment disillusioned
inspiration inspired inspiring inspire
interest interested interesting
fascination fascinated fascinating fascinate
enchantment enchanted enchanting
enthrallment enthralled enthralling
betrayal betrayed betray
violation violated violate
ridicule ridiculed
exclusion excluded exclude
persecution persecuted persecute
threat threatened threatening threaten
exposure exposed expose
stress stressed stressful
pressure pressured
tiredness tired tiring
sleepiness sleepy
indifference indifferent indifferently
withdrawal withdrawn withdraw
dismissal dismissive dismiss
judgment judgmental judgement judgemental
provocation provoked provoke provoking
inadequacy inadequate
insignificance insignificant
helplessness helpless helplessly
powerlessness powerless
worthlessness worthless
emptiness empty
numbness numb
hopelessness hopeless hopelessly
hope hopeful hopefully hoping hoped
trust trusting trustful trusted
faith faithful faithfully
awareness aware
respect respected respectful
appreciation appreciated appreciative appreciate
thankfulness thankful thankfully
relaxation relaxed relax relaxing
thoughtfulness thoughtful thoughtfully
pensiveness pensive pensively
shyness shy shyly
sadness sad sadly sadden saddened
happiness happy happily
unhappiness unhappy unhappily
calm calmness calmly calmed
mockery mocking mock mocked
disdain disdainful disdainfully
suspicion suspicious suspiciously
doubt doubtful doubting doubtfully doubted
worthiness worthy
caring care cared
""".strip()

# derived forms that suffix rules would produce but that mean something else
STOP_FORMS = {
    'business',
    'businesses',
    'movement',
    'movements',
    'careful',
    'carefully',
    'carefulness',
    'useful',
    'usefully',
    'usefulness',
    'contention',
    'contentions',
    'lone',
    'easy',
    'easily',
    'willful',
    'forceful',
    'playfulness_',
    'freely_',
    'longed',
    'sensation',
    'sensational',
    'resignation',
    'resign',
    'resigns',
    'resigning',
    'passable',
    'sorely',
    'lowly',
    'downy',
    'powers',
    'powered',
    'powering',
    'spirit',
    'spirits',
    'bright',
    'brightly',
    'mean',
    'likely',
    'likeness',
    'likelier',
    'likeliest',
    'tightly',
    'forcefully',
    'attentively',
    'actively',
    'closely',
    'closeness_',
    'meaningful',
    'meaning',
    'meanings',
    'considerately',
    'emotionally',
    'sensibly',
    'sensible',
    'willingly',
    'freely',
    'opening',
    'openly',
    'engagement',
    'engagements',
    'use',
    'uses',
    'using',
    'contents',
}


def _lemminflect():
  try:
    import lemminflect  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit(
        'build_lexicon.py needs lemminflect (pip install lemminflect); ' 'the runtime does not'
    )
  return lemminflect


_LI = None


def known(word: str) -> bool:
  """lemminflect knows the word (as a lemma or an inflected form)."""
  if ' ' in word or not word.isascii():
    return False
  return bool(_LI.getAllLemmas(word))


def inflections(word: str) -> set[str]:
  """Inflections of ``word`` as a lemma, plus its noun/adjective lemma's.

  Verb lemmas of participle adjectives are NOT followed (``moved`` would
  otherwise bring ``move, moves, moving``); verb families that matter are
  listed in FAMILIES instead.
  """
  out = set()
  if ' ' in word:
    return out
  for forms in _LI.getAllInflections(word).values():
    out.update(forms)
  for pos, lemmas in _LI.getAllLemmas(word).items():
    if pos not in ('NOUN', 'ADJ'):
      continue
    for lemma in lemmas:
      out.add(lemma)
      for forms in _LI.getAllInflections(lemma, upos=pos).values():
        out.update(forms)
  return out


def _ly(w: str) -> list[str]:
  if w.endswith('y'):
    return [w[:-1] + 'ily']
  if w.endswith('le'):
    return [w[:-1] + 'y']
  if w.endswith('ic'):
    return [w + 'ally']
  if w.endswith('ll'):
    return [w + 'y']
  return [w + 'ly']


def derivations(w: str) -> set[str]:
  """Candidate derivational forms of ``w`` (suffix rules), validated below."""
  if ' ' in w or '-' in w:
    return set()
  c = set()
  stem_y = w[:-1] + 'i' if w.endswith('y') else w
  stem_e = w[:-1] if w.endswith('e') else w
  c.add(stem_y + 'ness')  # happy -> happiness
  c.update(_ly(w))  # sad -> sadly
  c.update({w + 'ment', stem_e + 'ment'})  # amaze -> amazement
  c.update({w + 'ful', stem_y + 'ful'})  # hope -> hopeful, pity -> pitiful
  c.update({stem_y + 'ous', w + 'ous', stem_e + 'ous'})  # fury -> furious
  if w.endswith('ate'):
    c.add(w[:-1] + 'ion')  # frustrate -> frustration
  if w.endswith('ss'):
    c.add(w + 'ion')  # depress -> depression
  if w.endswith('ous'):
    c.add(w[:-3] + 'osity')  # curious -> curiosity
  if w.endswith('ble'):
    c.add(w[:-3] + 'bility')  # vulnerable -> vulnerability
  c.update({stem_e + 'ity', w + 'ity'})  # hostile -> hostility
  # reverse rules
  if w.endswith('iness'):
    c.add(w[:-5] + 'y')
  if w.endswith('ness'):
    c.add(w[:-4])
  if w.endswith('ily'):
    c.add(w[:-3] + 'y')
  elif w.endswith('ally'):
    c.add(w[:-4])
  elif w.endswith('ly'):
    c.add(w[:-2])
  if w.endswith('ment'):
    c.update({w[:-4], w[:-4] + 'e'})
  if w.endswith('ation'):
    c.update({w[:-5] + 'ate', w[:-5] + 'e', w[:-5]})
  if w.endswith('osity'):
    c.add(w[:-5] + 'ous')
  if w.endswith('ity') and not w.endswith('osity'):
    c.update({w[:-3], w[:-3] + 'e'})
  if w.endswith('ful'):
    c.update({w[:-3], w[:-4] + 'y' if w[:-3].endswith('i') else w[:-3]})
  c.discard(w)
  return {x for x in c if x and known(x)}


def spelling_variants(w: str) -> set[str]:
  out = set()
  if '-' in w:
    out.update({w.replace('-', ' '), w.replace('-', '')})
  if ' ' in w and len(w.split()) == 2:
    out.add(w.replace(' ', '-'))
  for a, b in (
      ('ize', 'ise'),
      ('our', 'or'),
      ('or', 'our'),
      ('sceptic', 'skeptic'),
      ('skeptic', 'sceptic'),
      ('judgement', 'judgment'),
      ('judgment', 'judgement'),
  ):
    if a in w:
      out.add(w.replace(a, b))
  return {x for x in out if x != w and (' ' in x or '-' in x or known(x) or x.endswith('ise'))}


def parse_families() -> dict[str, set[str]]:
  fam: dict[str, set[str]] = {}
  for line in FAMILIES.splitlines():
    members = line.split()
    if not members:
      continue
    group = set(members)
    for m in members:
      fam.setdefault(m, set()).update(group)
  return fam


def parse_clusters() -> list[list[str]]:
  out = []
  for line in CLUSTERS.splitlines():
    members = [m.strip().lower() for m in line.split(',') if m.strip()]
    if members:
      out.append(list(dict.fromkeys(members)))
  return out


def wheel_words() -> set[str]:
  ws = set()
  for _, tree in WHEELS:
    for l1, sub in tree.items():
      ws.add(l1)
      for l2, l3s in sub.items():
        ws.add(l2)
        ws.update(l3s)
  return ws


def build() -> dict:
  global _LI  # pylint: disable=global-statement
  _LI = _lemminflect()
  ww = wheel_words()
  clusters = parse_clusters()
  root2words: dict[str, set[str]] = {w: {w} for w in ww}
  for i, members in enumerate(clusters):
    wheel_members = [m for m in members if m in ww]
    if not wheel_members:
      raise SystemExit(f'cluster {i} has no wheel word: {members[:4]}')
    for m in members:
      root2words.setdefault(m, set()).update(wheel_members)
  fam = parse_families()
  forms: dict[str, list[str]] = {}
  for root in sorted(root2words):
    base = {root} | fam.get(root, set())
    f = set(base)
    for b in base:
      f |= derivations(b)
    for x in list(f):
      f |= inflections(x)
    for x in list(f):
      f |= spelling_variants(x)
    f = {x for x in f if x and x not in STOP_FORMS}
    f.discard(root)
    forms[root] = sorted(f)
  wheels = [{'name': n, 'source': WHEEL_SOURCES[n], 'tree': t} for n, t in WHEELS]
  return {
      'version': VERSION,
      'generator': 'scripts/build_lexicon.py',
      'sources': {n: WHEEL_SOURCES[n] for n, _ in WHEELS},
      'wheels': wheels,
      'valence': {n: VALENCE[n] for n, _ in WHEELS},
      'root2words': {k: sorted(v) for k, v in sorted(root2words.items())},
      'forms': forms,
  }


def to_json(data: dict) -> str:
  """Compact, diff-able JSON: one root / wheel per line."""
  dump = lambda x: json.dumps(x, ensure_ascii=True)  # noqa: E731
  parts = []
  for key, val in data.items():
    if key in ('root2words', 'forms', 'sources', 'valence'):
      inner = ',\n'.join(f'  {dump(k)}: {dump(v)}' for k, v in val.items())
      parts.append(f'{dump(key)}: {{\n{inner}\n}}')
    elif key == 'wheels':
      inner = ',\n'.join(f'  {dump(w)}' for w in val)
      parts.append(f'{dump(key)}: [\n{inner}\n]')
    else:
      parts.append(f'{dump(key)}: {dump(val)}')
  text = '{\n' + ',\n'.join(parts) + '\n}\n'
  assert json.loads(text) == data
  return text


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--out', default=str(OUT))
  ap.add_argument(
      '--check', action='store_true', help='do not write; fail if the committed JSON differs'
  )
  args = ap.parse_args(argv)
  data = build()
  text = to_json(data)
  n_forms = len({f for v in data['forms'].values() for f in v} | set(data['forms']))
  stats = (
      f'wheel words {len(wheel_words())}, roots {len(data["root2words"])}, '
      f'surface forms {n_forms}, {len(text) / 1e6:.2f} MB'
  )
  if args.check:
    old = Path(args.out).read_text(encoding='utf-8') if Path(args.out).exists() else ''
    if old != text:
      print(f'{args.out} is out of date ({stats}); run scripts/build_lexicon.py')
      return 1
    print(f'{args.out} up to date ({stats})')
    return 0
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(text, encoding='utf-8')
  print(f'wrote {args.out}: {stats}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
