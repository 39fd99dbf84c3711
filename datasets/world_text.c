/* The world's English: value lists, one table of attributes with the
 * sentences that state and ask them, the cause -> effect rules, the WSC
 * pronoun sentences and the glue of stories. Slots are described in
 * world_text.h. The vocabulary is kept to a few hundred words so a tiny
 * model can learn it in minutes. */
#include "world_text.h"

#include <stddef.h>

#define LIST(...) {(const char *const[]){__VA_ARGS__}, \
                   sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)}
#define STRS(...) (const char *const[]){__VA_ARGS__, NULL}

const w_list w_values[WC_TOWN] = {
    [WC_COLOUR] = LIST("red", "blue", "green", "yellow", "black", "white", "brown",
                       "grey", "orange", "purple"),
    [WC_SIZE] = LIST("tiny", "small", "big", "huge"),
    [WC_JOB] = LIST("baker", "farmer", "teacher", "doctor", "painter", "fisher",
                    "builder", "singer", "cook", "guard", "miller", "tailor",
                    "nurse", "potter"),
    [WC_DISH] = LIST("bread", "fish", "apples", "cheese", "honey", "nuts", "berries",
                     "eggs", "soup", "cake", "plums", "rice"),
    [WC_DIET] = LIST("seeds", "grass", "fish", "meat", "insects", "leaves", "berries",
                     "nuts", "fruit", "worms", "roots", "moss"),
    [WC_HABITAT] = LIST("forest", "river", "lake", "sea", "desert", "swamp", "field",
                        "hills", "mountains", "cave"),
    [WC_COVER] = LIST("fur", "feathers", "scales", "spikes", "wool"),
    [WC_PET] = LIST("cat", "dog", "horse", "goat", "duck", "rabbit", "pig", "hen",
                    "sheep", "cow", "owl", "mouse"),
    [WC_HEAT] = LIST("melts", "burns", "boils", "glows", "cracks", "smokes", "crumbles",
                     "foams"),
    [WC_USE] = LIST("making tools", "making glass", "making paint", "building walls",
                    "making rope", "making cloth", "making medicine", "lighting lamps",
                    "making pots", "cleaning floors"),
    [WC_GOOD] = LIST("bread", "wool", "pots", "boats", "cloth", "cheese", "rope",
                     "baskets", "honey", "apples"),
    /* aligned with WC_HABITAT */
    [WC_ABILITY] = LIST("climb trees", "swim fast", "dive deep", "stay under water",
                        "go without water", "walk in mud", "run fast", "jump far",
                        "climb rocks", "see in the dark"),
    /* aligned with WC_JOB */
    [WC_TOOL] = LIST("dough", "seeds", "books", "medicine", "brushes", "nets", "bricks",
                     "songs", "pans", "keys", "grain", "needles", "bandages", "clay"),
    /* aligned with WC_HEAT */
    [WC_PRODUCT] = LIST("a liquid", "ash", "steam", "light", "small pieces", "smoke",
                        "dust", "bubbles"),
};

const w_attr w_attrs[] = {
    /* ---- people ---- */
    {W_PERSON, WC_JOB,
     STRS("{S} is {a_v}.", "{S} works as {a_v}.", "{S} has worked as {a_v} for many years.",
          "By trade, {S} is {a_v}.", "{S} earns a living as {a_v}."),
     STRS("What is the job of {name}?", "What does {name} do for work?",
          "What work does {name} do?", "How does {name} earn a living?"),
     STRS("is {name} {a_v}", "does {name} work as {a_v}")},
    {W_PERSON, WC_TOWN,
     STRS("{S} lives in {v}.", "{P} home is in {v}.", "{S} lives in the town of {v}.",
          "{S} has a house in {v}."),
     STRS("Where does {name} live?", "In which town does {name} live?",
          "What town does {name} live in?"),
     STRS("does {name} live in {v}", "is the home of {name} in {v}")},
    {W_PERSON, WC_COLOUR,
     STRS("{P} favourite colour is {v}.", "{S} likes the colour {v} best.",
          "Of all the colours, {S} likes {v} best."),
     STRS("What is the favourite colour of {name}?", "Which colour does {name} like best?"),
     STRS("is {v} the favourite colour of {name}", "does {name} like the colour {v} best")},
    {W_PERSON, WC_PET,
     STRS("{S} keeps {a_v}.", "{S} has a pet {v}.", "{S} owns {a_v} as a pet.",
          "{S} takes care of a pet {v}."),
     STRS("What animal does {name} keep?", "What pet does {name} have?",
          "Which animal does {name} own as a pet?"),
     STRS("does {name} keep {a_v}", "is the pet of {name} {a_v}")},
    {W_PERSON, WC_DISH,
     STRS("{S} likes to eat {v}.", "{P} favourite food is {v}.", "{S} loves to eat {v}."),
     STRS("What food does {name} like?", "What does {name} like to eat?",
          "What is the favourite food of {name}?"),
     STRS("does {name} like to eat {v}", "is {v} the favourite food of {name}")},
    /* ---- animal species ---- */
    {W_SPECIES, WC_SIZE,
     STRS("{S} are {v} animals.", "A {sg} is {a_v} animal.", "{S} are quite {v}.",
          "All {pl} are {v} animals."),
     STRS("How big are {pl}?", "What size is a {sg}?", "How big is a {sg}?"),
     STRS("are {pl} {v} animals", "is a {sg} {a_v} animal")},
    {W_SPECIES, WC_COLOUR,
     STRS("{S} are {v} in colour.", "Most {pl} are {v}.", "A {sg} is {v} in colour."),
     STRS("What colour are {pl}?", "What colour is a {sg}?"),
     STRS("are {pl} {v} in colour", "is a {sg} {v}")},
    {W_SPECIES, WC_HABITAT,
     STRS("{S} live in the {v}.", "You can find {pl} in the {v}.",
          "The home of the {sg} is the {v}.", "{S} make their homes in the {v}."),
     STRS("Where do {pl} live?", "What is the home of the {sg}?",
          "In which place do {pl} make their homes?"),
     STRS("do {pl} live in the {v}", "is the {v} the home of the {sg}")},
    {W_SPECIES, WC_DIET,
     STRS("{S} eat {v}.", "{S} feed on {v}.", "The {sg} eats mostly {v}.",
          "The food of {pl} is {v}."),
     STRS("What do {pl} eat?", "What does a {sg} eat?", "What is the food of {pl}?"),
     STRS("do {pl} eat {v}", "does the {sg} feed on {v}")},
    {W_SPECIES, WC_COVER,
     STRS("{S} are covered in {v}.", "{S} have {v} on their bodies.",
          "The body of a {sg} is covered with {v}.", "All {pl} are covered in {v}."),
     STRS("What covers the body of a {sg}?", "What are {pl} covered in?",
          "How can you tell a {sg} by its body?"),
     STRS("are {pl} covered in {v}", "does a {sg} have {v} on its body")},
    /* ---- substances ---- */
    {W_SUBSTANCE, WC_COLOUR,
     STRS("{S} is {a_v} substance.", "{S} is {v} in colour.", "Pure {name} is {v}."),
     STRS("What colour is {name}?", "What is the colour of pure {name}?"),
     STRS("is {name} {v} in colour", "is pure {name} {v}")},
    {W_SUBSTANCE, WC_HEAT,
     STRS("When {S} is heated, it {v}.", "{S} {v} when it gets hot.",
          "If you heat {name}, it {v}."),
     STRS("What does {name} do when it is heated?", "How does {name} change when it gets hot?"),
     STRS("does {name} {vb} when it is heated", "does {name} {vb} when it gets hot")},
    {W_SUBSTANCE, WC_USE,
     STRS("People use {S} for {v}.", "{S} is used for {v}.", "{S} is useful for {v}."),
     STRS("What is {name} used for?", "What do people use {name} for?",
          "How do people use {name}?"),
     STRS("is {name} used for {v}", "do people use {name} for {v}")},
    {W_SUBSTANCE, WC_HABITAT,
     STRS("{S} is found in the {v}.", "You can find {S} in the {v}.",
          "People collect {name} in the {v}."),
     STRS("Where is {name} found?", "Where can you find {name}?"),
     STRS("is {name} found in the {v}", "can you find {name} in the {v}")},
    /* ---- towns ---- */
    {W_TOWN, WC_SIZE,
     STRS("{S} is {a_v} town.", "The town of {name} is {v}."),
     STRS("How big is {name}?", "What size is the town of {name}?"),
     STRS("is {name} {a_v} town", "is the town of {name} {v}")},
    {W_TOWN, WC_HABITAT,
     STRS("{S} is near the {v}.", "{S} lies close to the {v}.",
          "The town of {name} sits by the {v}."),
     STRS("What is {name} near?", "Which place lies close to {name}?"),
     STRS("is {name} near the {v}", "does {name} lie close to the {v}")},
    {W_TOWN, WC_GOOD,
     STRS("{S} is known for its {v}.", "People in {name} make fine {v}.",
          "The market of {name} sells {v}."),
     STRS("What is {name} known for?", "What do people in {name} make?"),
     STRS("is {name} known for its {v}", "do people in {name} make {v}")},
    /* ---- rules: values that follow from another attribute ---- */
    {W_SPECIES, WC_ABILITY,
     STRS("{S} can {v}.", "All {pl} can {v}.", "A {sg} can {v}."),
     STRS("What can {pl} do?", "What are {pl} able to do?"),
     STRS("can {pl} {v}", "are {pl} able to {v}"),
     7, /* habitat */
     STRS("What can {pl} do if they live in the {c}?", "What are {pl} able to do in the {c}?"),
     STRS("can {pl} {v} when they live in the {c}", "are {pl} able to {v} in the {c}"),
     STRS("Animals that live in the {c} can {v}.", "Every animal of the {c} can {v}."),
     STRS("{S} live in the {c}, so {s} can {v}.", "Because {s} live in the {c}, {pl} can {v}.")},
    {W_PERSON, WC_TOOL,
     STRS("{S} works with {v} every day.", "Every day, {S} works with {v}."),
     STRS("What does {name} work with?", "What does {name} use at work?"),
     STRS("does {name} work with {v}", "does {name} use {v} at work"),
     0, /* job */
     STRS("What does {name} work with as {a_c}?", "What does {name} use at work as {a_c}?"),
     STRS("does {name} work with {v} as {a_c}", "does {name} use {v} at work as {a_c}"),
     STRS("Every {c} works with {v}.", "{a_c} uses {v} at work."),
     STRS("{S} is {a_c}, so {s} works with {v} every day.", "As {a_c}, {S} works with {v}.")},
    {W_SUBSTANCE, WC_PRODUCT,
     STRS("When it is heated, {S} turns into {v}.", "Heated {name} turns into {v}."),
     STRS("What does {name} turn into when it is heated?",
          "What is left of {name} after it is heated?"),
     STRS("does {name} turn into {v} when it is heated", "is {name} turned into {v} by heat"),
     11, /* heat */
     STRS("What does {name} turn into when it {c}?", "What is left of {name} after it {c}?"),
     STRS("does {name} turn into {v} when it {c}", "is {name} turned into {v} when it {c}"),
     STRS("When a substance {c}, it turns into {v}.",
          "Anything that {c} in the heat turns into {v}."),
     STRS("{S} {c} when it is heated, so it turns into {v}.",
          "Because {S} {c} in the heat, it turns into {v}.")},
};
const int w_n_attrs = sizeof w_attrs / sizeof w_attrs[0];

const w_prop w_props[] = {
    {W_SPECIES, 7 /* habitat */, "river|lake|sea|swamp",
     STRS("{S} can swim.", "{S} are good swimmers."),
     STRS("{S} cannot swim.", "{S} never swim."),
     STRS("can {pl} swim when they live in the {c}", "do {pl} swim if they live in the {c}"),
     STRS("Animals that live in the {c} can swim.", "Every animal of the {c} can swim."),
     STRS("Animals that live in the {c} cannot swim.", "No animal of the {c} can swim.")},
    {W_SPECIES, 9 /* covering */, "feathers",
     STRS("{S} can fly.", "{S} fly well."),
     STRS("{S} cannot fly.", "{S} never fly."),
     STRS("can {pl} fly when they are covered in {c}", "do {pl} fly if they have {c}"),
     STRS("Animals covered in {c} can fly.", "Every animal with {c} can fly."),
     STRS("Animals covered in {c} cannot fly.", "No animal with {c} can fly.")},
    {W_SPECIES, 8 /* diet */, "meat|fish|insects|worms",
     STRS("{S} hunt for their food.", "{S} are hunters."),
     STRS("{S} do not hunt.", "{S} never hunt."),
     STRS("do {pl} hunt when they eat {c}", "are {pl} hunters if they eat {c}"),
     STRS("Animals that eat {c} hunt for their food.", "Every animal that eats {c} hunts."),
     STRS("Animals that eat {c} do not hunt.", "No animal that eats {c} hunts.")},
    {W_PERSON, 0 /* job */, "baker|teacher|doctor|tailor|potter|miller|cook|nurse|singer",
     STRS("{S} works indoors.", "{S} spends the working day indoors."),
     STRS("{S} works outdoors.", "{S} spends the working day outdoors."),
     STRS("does {name} work indoors as {a_c}", "is {name} indoors all day as {a_c}"),
     STRS("Every {c} works indoors.", "{a_c} spends the working day indoors."),
     STRS("Every {c} works outdoors.", "{a_c} spends the working day outdoors.")},
    {W_SUBSTANCE, 11 /* heat */, "melts|boils|foams",
     STRS("{S} becomes runny in the heat.", "Heat makes {name} runny."),
     STRS("{S} stays solid in the heat.", "Heat never makes {name} runny."),
     STRS("does {name} become runny when it {c}", "is {name} runny after it {c}"),
     STRS("A substance that {c} becomes runny.", "Anything that {c} in the heat becomes runny."),
     STRS("A substance that {c} does not become runny.", "Nothing that {c} in the heat becomes runny.")},
};
const int w_n_props = sizeof w_props / sizeof w_props[0];

const w_rule w_rules[] = {
    {"{S} was hungry.", "{S} ate some bread.",
     "Why did {name} eat some bread?", "Because {s} was hungry.", NULL, 1},
    {"{S} was very tired.", "{S} went to bed early.",
     "Why did {name} go to bed early?", "Because {s} was very tired.", NULL, 2},
    {"{S} dropped {P} {thing}.", "{P} {thing} broke.",
     "Why did the {thing} of {name} break?", "Because {s} dropped it.",
     "glass|cup|plate|bowl|vase", 3},
    {"{S} felt cold.", "{S} put on a warm coat.",
     "Why did {name} put on a warm coat?", "Because {s} felt cold.", NULL, 4},
    {"{S} ran all the way home.", "{S} was out of breath.",
     "Why was {name} out of breath?", "Because {s} ran all the way home.", NULL, 5},
    {"{S} lost {P} key.", "{S} could not open {P} door.",
     "Why could {name} not open {p} door?", "Because {s} lost {p} key.", NULL, 6},
    {"{S} won the race.", "{S} got a prize.",
     "Why did {name} get a prize?", "Because {s} won the race.", NULL, 7},
    {"{S} ate some old fish.", "{S} felt sick.",
     "Why did {name} feel sick?", "Because {s} ate some old fish.", NULL, 8},
    {"{S} had a bad cough.", "{S} went to see the doctor.",
     "Why did {name} go to see the doctor?", "Because {s} had a bad cough.", NULL, 8},
    {"{S} was thirsty.", "{S} drank a cup of water.",
     "Why did {name} drink a cup of water?", "Because {s} was thirsty.", NULL, 1},
    {"{S} left {P} {thing} out in the rain.", "{P} {thing} got wet.",
     "Why did the {thing} of {name} get wet?", "Because {s} left it out in the rain.",
     "book|coat|bag|hat", 10},
    {"{S} forgot {P} umbrella.", "{S} got wet in the rain.",
     "Why did {name} get wet in the rain?", "Because {s} forgot {p} umbrella.", NULL, 10},
    {"{S} planted seeds in {P} garden.", "Flowers grew in {P} garden.",
     "Why did flowers grow in the garden of {name}?", "Because {s} planted seeds there.",
     NULL, 11},
    {"{S} forgot to water {P} plants.", "{P} plants died.",
     "Why did the plants of {name} die?", "Because {s} forgot to water them.", NULL, 11},
    {"{S} blew out the candle.", "{P} room went dark.",
     "Why did the room of {name} go dark?", "Because {s} blew out the candle.", NULL, 12},
    {"{S} opened the window in winter.", "{P} room became cold.",
     "Why did the room of {name} become cold?", "Because {s} opened the window in winter.",
     NULL, 4},
    {"{S} heard a loud noise at night.", "{S} was afraid.",
     "Why was {name} afraid?", "Because {s} heard a loud noise at night.", NULL, 13},
    {"{S} told a funny joke.", "{P} friends laughed.",
     "Why did the friends of {name} laugh?", "Because {s} told a funny joke.", NULL, 14},
    {"{S} broke {P} leg.", "{S} could not walk for a month.",
     "Why could {name} not walk for a month?", "Because {s} broke {p} leg.", NULL, 8},
    {"{S} saved money all year.", "{S} bought a new boat.",
     "Why could {name} buy a new boat?", "Because {s} saved money all year.", NULL, 15},
    {"{S} missed the bus.", "{S} was late for work.",
     "Why was {name} late for work?", "Because {s} missed the bus.", NULL, 16},
    {"{S} cut {P} finger.", "{S} put a bandage on {P} finger.",
     "Why did {name} put a bandage on {p} finger?", "Because {s} cut {p} finger.", NULL, 8},
    {"{S} burned the bread.", "{P} kitchen smelled of smoke.",
     "Why did the kitchen of {name} smell of smoke?", "Because {s} burned the bread.",
     NULL, 18},
    {"{S} fed {P} hungry dog.", "{P} dog wagged its tail.",
     "Why did the dog of {name} wag its tail?", "Because {s} fed it.", NULL, 19},
    {"{S} studied hard.", "{S} passed the test.",
     "Why did {name} pass the test?", "Because {s} studied hard.", NULL, 20},
    {"{S} stayed in the sun too long.", "{S} got a sunburn.",
     "Why did {name} get a sunburn?", "Because {s} stayed in the sun too long.", NULL, 21},
    {"{S} lit a fire.", "{P} house became warm.",
     "Why did the house of {name} become warm?", "Because {s} lit a fire.", NULL, 4},
    {"{S} shouted at the birds.", "The birds flew away from {O}.",
     "Why did the birds fly away from {name}?", "Because {s} shouted at them.", NULL, 22},
    {"{S} sat on a freshly painted bench.", "{P} clothes got paint on them.",
     "Why did the clothes of {name} get paint on them?",
     "Because {s} sat on a freshly painted bench.", NULL, 23},
    {"{S} cleaned the house all day.", "{P} house was spotless.",
     "Why was the house of {name} spotless?", "Because {s} cleaned it all day.", NULL, 24},
    {"{S} lost {P} job.", "{S} had little money.",
     "Why did {name} have little money?", "Because {s} lost {p} job.", NULL, 15},
    {"{S} played loud music at night.", "{P} neighbours complained.",
     "Why did the neighbours of {name} complain?", "Because {s} played loud music at night.",
     NULL, 25},
    {"{S} left the gate open.", "{P} sheep ran out of the field.",
     "Why did the sheep of {name} run out of the field?", "Because {s} left the gate open.",
     NULL, 26},
    {"{S} picked ripe apples.", "{S} baked an apple pie.",
     "Why did {name} bake an apple pie?", "Because {s} picked ripe apples.", NULL, 27},
    {"{S} got a letter from an old friend.", "{S} smiled.",
     "Why did {name} smile?", "Because {s} got a letter from an old friend.", NULL, 28},
    {"{S} slipped on the ice.", "{S} fell down.",
     "Why did {name} fall down?", "Because {s} slipped on the ice.", NULL, 8},
    {"{S} wanted to see the stars.", "{S} went outside at night.",
     "Why did {name} go outside at night?", "Because {s} wanted to see the stars.", NULL, 31},
    {"{S} heard that {P} friend was ill.", "{S} visited {P} friend.",
     "Why did {name} visit {p} friend?", "Because {s} heard that {p} friend was ill.", NULL, 29},
    {"{S} practised the song every day.", "{S} sang well at the party.",
     "Why did {name} sing well at the party?", "Because {s} practised the song every day.",
     NULL, 20},
    {"{S} needed new shoes.", "{S} went to the shoe shop.",
     "Why did {name} go to the shoe shop?", "Because {s} needed new shoes.", NULL, 32},
};
const int w_n_rules = sizeof w_rules / sizeof w_rules[0];

const w_wsc w_wscs[] = {
    {"{A} called {B} because {s} needed some help.", 'A', NULL},
    {"{A} thanked {B} because {s} had fixed the roof.", 'B', NULL},
    {"{A} visited {B} because {s} was ill.", 'B', NULL},
    {"{A} waited for {B} because {s} was late.", 'B', NULL},
    {"{A} gave {B} some bread because {s} was hungry.", 'B', NULL},
    {"{A} asked {B} for the way because {s} was lost.", 'A', NULL},
    {"{A} paid {B} because {s} had painted the fence.", 'B', NULL},
    {"{A} told {B} a story because {s} could not sleep.", 'B', NULL},
    {"{A} lent {B} a coat because {s} was cold.", 'B', NULL},
    {"{A} helped {B} because {s} was carrying a heavy box.", 'B', NULL},
    {"{A} was angry with {B} because {s} had broken the cup.", 'B', NULL},
    {"{A} could not visit {B} because {s} was too busy.", 'A', NULL},
    {"{A} beat {B} in the race because {s} ran faster.", 'A', NULL},
    {"{A} phoned {B} because {s} wanted to talk.", 'A', NULL},
    {"{A} met {B} at the market and gave {o} an apple.", 'B', NULL},
    {"{A} hugged {B} because {s} was sad.", 'B', NULL},
    {"{A} woke {B} up because {s} was late for work.", 'B', NULL},
    {"{A} smiled at {B} because {s} was happy.", 'A', NULL},
    {"{A} put the {thing} on the floor because {it} was heavy.", 'T', "box|bag|basket|pot"},
    {"{A} threw away the {thing} because {it} was broken.", 'T', "cup|lamp|chair|plate"},
    {"{A} sold the {thing} because {it} was too old.", 'T', "boat|cart|chair|lamp"},
    {"{A} could not carry the {thing} because {it} was too big.", 'T', "box|table|basket|bed"},
    {"{A} fed the {group} because {they} were hungry.", 'G', "goats|ducks|hens|pigs|cows"},
    {"{A} chased the {group} because {they} were in the garden.", 'G', "goats|ducks|hens|pigs|dogs"},
    {"{A} washed the {group} because {they} were dirty.", 'G', "goats|pigs|dogs|sheep"},
};
const int w_n_wscs = sizeof w_wscs / sizeof w_wscs[0];

const char *const w_define_q[] = {
    "{size} animals that live in the {habitat} and eat {diet} are called what?",
    "What are the {size} animals that eat {diet} and live in the {habitat} called?",
    NULL,
};
const char *const w_who_q[] = {"Which person works as {a_v}?", "Who is {a_v}?",
                               "Who earns a living as {a_v}?", NULL};
const char *const w_define_s[] = {
    "{size} animals that live in the {habitat} and eat {diet} are called {pl}.", NULL};
const char *const w_tell_q[] = {"Tell me about {S}.", "Describe {S}.",
                                "Tell me something about {S}.", "Please describe {S}.", NULL};
const char *const w_rule_what[] = {"What happened after {CN}?", NULL};

const w_list w_first_f = LIST("Anna", "Mary", "Lucy", "Emma", "Sara", "Rose", "Lily", "Jane",
                              "Kate", "Nora", "Ella", "Ruth", "Alice", "Clara", "Grace",
                              "Mia", "Eva", "Ivy", "Amy", "Beth");
const w_list w_first_m = LIST("Tom", "Jack", "Sam", "Ben", "Max", "Leo", "Paul", "John",
                              "Luke", "Adam", "Noah", "Owen", "Carl", "Dan", "Hugo", "Ivan",
                              "Joe", "Ken", "Fred", "Tim");
const w_list w_surnames = LIST("Reed", "Stone", "Hill", "Brook", "Fox", "Wood", "Lane",
                               "Hale", "Moss", "Frost", "Ford", "Price", "Clark", "Dale",
                               "Finch", "Hart", "Knox", "Pike", "Rowe", "Shaw", "Snow",
                               "Wren", "Young", "Bell", "Cole", "Dean", "Lowe", "Nash",
                               "Penn", "Quinn", "Ross", "Webb", "Marsh", "Cross", "Hunt",
                               "Lake");
const w_list w_town_pre = LIST("Oak", "Elm", "Ash", "Red", "Stone", "Mill", "Fox", "Wolf",
                               "Bright", "Cold", "Green", "Black", "Silver", "High", "West",
                               "East", "North", "South");
const w_list w_town_suf = LIST("vale", "hill", "ford", "field", "wood", "brook", "port",
                               "ton", "by", "mere");
const w_list w_onsets = LIST("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t",
                             "v", "z", "br", "dr", "gl", "gr", "kr", "pl", "sk", "sn",
                             "st", "tr");
const w_list w_vowels = LIST("a", "e", "i", "o", "u");
const w_list w_mids = LIST("b", "d", "g", "k", "l", "m", "n", "p", "r", "t", "v", "z");
const w_list w_codas = LIST("", "n", "r", "l", "m", "k");
const w_list w_sub_suffixes = LIST("ite", "ium", "ine", "ane", "ol", "ene");

const char *const w_job_lines[] = {
    "A baker makes bread and cakes.",
    "A farmer grows food in the fields.",
    "A teacher helps children learn.",
    "A doctor helps people who are sick.",
    "A painter paints houses and pictures.",
    "A fisher catches fish in the river and the sea.",
    "A builder builds houses and walls.",
    "A singer sings songs for people.",
    "A cook makes meals in a kitchen.",
    "A guard keeps the town safe.",
    "A miller grinds grain into flour.",
    "A tailor makes clothes from cloth.",
    "A nurse takes care of sick people.",
    "A potter makes pots from clay.",
};

const char *const w_general[] = {
    "Animals that live in the river can swim.",
    "Animals that live in the sea can swim.",
    "Animals that live in the lake can swim.",
    "Animals with feathers have wings.",
    "Animals that eat meat hunt other animals.",
    "Animals that eat grass spend the day in the fields.",
    "Tiny animals hide from big animals.",
    "When a substance melts, it turns into a liquid.",
    "When a substance boils, it turns into a gas.",
    "When a substance burns, it gives off smoke and heat.",
    "A town near the sea has many boats.",
    "A town near the forest has many builders.",
    "People keep pets at home and feed them every day.",
    "A man is called he, and a woman is called she.",
    "A thing is called it, and many animals are called they.",
    NULL,
};

const char *const w_story_when[] = {"One day,", "One morning,", "Last week,",
                                     "On Monday,", "In the spring,", "Yesterday,", NULL};
const char *const w_story_so[] = {"So", "As a result,", "Because of that,", "Soon",
                                   "After that,", NULL};
const char *const w_story_end[] = {
    "In the evening, {S} went back home to {v}.",
    "It was a long day for {name}.",
    "Then {S} had supper and went to sleep.",
    "The next day, {S} told the story to everyone in {v}.",
    "That is what happened to {name} that day.",
    NULL,
};

/* {CN}/{EN}: the cause/effect told with the person's name, no final period;
 * {cp}/{ep}: told with pronouns, starting lower-case. */
const char *const w_causal[] = {
    "{CN}, so {ep}.",
    "{EN} because {cp}.",
    "Because {CN}, {ep}.",
    "{CN}. As a result, {ep}.",
    "{EN}. This happened because {cp}.",
    "{CN}. That is why {ep}.",
    NULL,
};

static void each_list(const w_list *l, void (*fn)(const char *, void *), void *ud) {
    for (int i = 0; i < l->n; i++) fn(l->v[i], ud);
}

static void each_strs(const char *const *s, void (*fn)(const char *, void *), void *ud) {
    for (; s && *s; s++) fn(*s, ud);
}

void w_text_each(void (*fn)(const char *s, void *ud), void *ud) {
    for (int c = 0; c < WC_TOWN; c++) each_list(&w_values[c], fn, ud);
    for (int a = 0; a < w_n_attrs; a++) {
        each_strs(w_attrs[a].facts, fn, ud);
        each_strs(w_attrs[a].questions, fn, ud);
        each_strs(w_attrs[a].yesno, fn, ud);
        each_strs(w_attrs[a].rule_questions, fn, ud);
        each_strs(w_attrs[a].rule_yesno, fn, ud);
        each_strs(w_attrs[a].rules, fn, ud);
        each_strs(w_attrs[a].since, fn, ud);
    }
    for (int p = 0; p < w_n_props; p++) {
        fn(w_props[p].holds, ud);
        each_strs(w_props[p].yes_facts, fn, ud);
        each_strs(w_props[p].no_facts, fn, ud);
        each_strs(w_props[p].yesno, fn, ud);
        each_strs(w_props[p].yes_rules, fn, ud);
        each_strs(w_props[p].no_rules, fn, ud);
    }
    for (int r = 0; r < w_n_rules; r++) {
        fn(w_rules[r].cause, ud);
        fn(w_rules[r].effect, ud);
        fn(w_rules[r].why_q, ud);
        fn(w_rules[r].why_a, ud);
        if (w_rules[r].things) fn(w_rules[r].things, ud);
    }
    for (int i = 0; i < w_n_wscs; i++) {
        fn(w_wscs[i].text, ud);
        if (w_wscs[i].pick) fn(w_wscs[i].pick, ud);
    }
    each_list(&w_first_f, fn, ud);
    each_list(&w_first_m, fn, ud);
    each_list(&w_surnames, fn, ud);
    for (int i = 0; i < w_values[WC_JOB].n; i++) fn(w_job_lines[i], ud);
    each_strs(w_general, fn, ud);
    each_strs(w_story_when, fn, ud);
    each_strs(w_story_so, fn, ud);
    each_strs(w_story_end, fn, ud);
    each_strs(w_causal, fn, ud);
    each_strs(w_define_q, fn, ud);
    each_strs(w_who_q, fn, ud);
    each_strs(w_define_s, fn, ud);
    each_strs(w_tell_q, fn, ud);
    each_strs(w_rule_what, fn, ud);
    /* the fixed words of the task prompts and chats */
    fn("Question Answer Passage True False yes no Human Assistant In the passage above "
       "does the pronoun refer to because therefore Tell me about Describe the town of "
       "animals called what who which where is are and it they he she his her him them "
       "Yes No Because", ud);
}
