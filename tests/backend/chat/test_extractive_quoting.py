"""The extractive tier reads a source into quotable sentences and quotes each with what it carries: the code,
list or definitions it introduces, its term, its table's columns, and the sentence it leans on."""

from __future__ import annotations

from backend.chat.tiers.extractive import compose_answer
from backend.grounding.question import read_question
from backend.grounding.quotable import quotable
from backend.grounding.relevance import rank
from backend.grounding.sentences import SentenceVectors
from tests.backend.chat.helpers import hit, prompt_for

# Issue 37: technical text. Made-up manual pages: a definition list of options, code introduced by a colon.
WIDGETCTL = [
    hit(
        1,
        "OPTIONS\n\n-n\n\n--dry-run\n\nDo not remove anything; only show what would be removed.\n\n-f\n\n--force\n\n"
        "Remove widgets even when they are locked by another user.",
        title="widgetctl-prune: Options",
        creator="manual",
    ),
    hit(
        2,
        "Widgets are kept in the spool directory until they are pruned. To list the widgets in the spool, run this "
        "command:\n\nwidgetctl list --spool\n\nThe list shows the oldest widget first.",
        title="widgetctl: Description",
        creator="manual",
    ),
]


def test_a_flag_is_quoted_with_the_sentence_that_defines_it(vectors: SentenceVectors) -> None:
    answer = compose_answer(
        prompt_for("Which option shows what would be pruned without removing it?", sources=WIDGETCTL, creator=None),
        vectors,
    )
    assert "-n, --dry-run: Do not remove anything; only show what would be removed. [1]" in answer


def test_code_a_sentence_introduces_is_quoted_as_code(vectors: SentenceVectors) -> None:
    answer = compose_answer(prompt_for("How do I list the widgets?", sources=WIDGETCTL, creator=None), vectors)
    assert "run this command: `widgetctl list --spool`. [2]" in answer


def test_a_statement_or_a_signature_a_sentence_introduces_is_quoted_as_code(vectors: SentenceVectors) -> None:
    """Code in a query language or a function's signature, on a line of its own after the sentence introducing it,
    reads as code however it is capitalised: "ALTER WIDGET ... ;" ends like a statement, "widget_count () → int"
    is a call. A line of prose there is not code: it stays out of the sentence before."""
    sources = [
        hit(
            1,
            "Each spool has its own defaults. To make a setting the default for one spool, run the statement:\n\n"
            "ALTER WIDGET SPOOL night SET retention TO 3;\n\nThe setting applies from the next session on.",
            title="Spool defaults",
            creator="manual",
        ),
        hit(
            2,
            "The library includes one function to count the widgets in a spool:\n\nwidget_count ( spool text ) → "
            "integer\n\nIt counts locked widgets too.",
            title="Widget functions",
            creator="manual",
        ),
    ]
    default = compose_answer(
        prompt_for("How do I make a setting the default for one spool?", sources=sources, creator=None), vectors
    )
    assert "run the statement: `ALTER WIDGET SPOOL night SET retention TO 3;`. [1]" in default
    counted = compose_answer(
        prompt_for("Which function counts the widgets in a spool?", sources=sources, creator=None), vectors
    )
    assert "count the widgets in a spool: `widget_count ( spool text ) → integer`. [2]" in counted
    prose = [hit(1, "To make a setting the default, do this:\n\nSome Heading Here\n\nThen restart.")]
    assert "`" not in compose_answer(prompt_for("How do I make a default?", sources=prose, creator=None), vectors)


def test_a_snake_case_parameter_or_a_signature_is_the_term_its_description_defines(vectors: SentenceVectors) -> None:
    """A reference's entries open with the thing they describe: a parameter in snake case with its type
    ("spool_retention (integer)"), a function's signature ("widget_count ( spool text ) → integer"). Each is read
    as code, so the description is quoted with the name the question asks for."""
    sources = [
        hit(
            1,
            "Spool settings\n\nspool_retention (integer)\n\nHow long a widget is kept in the spool before it is "
            "pruned. The default is 3 days.\n\nspool_quota (integer)\n\nThe most widgets one spool may hold.",
            title="Spool settings",
            creator="manual",
        ),
        hit(
            2,
            "widget_count ( spool text ) → integer\n\nCounts the widgets in a spool, locked ones included.",
            title="Widget functions",
            creator="manual",
        ),
    ]
    kept = compose_answer(
        prompt_for("Which setting decides how long widgets stay in the spool?", sources=sources, creator=None), vectors
    )
    assert "spool_retention (integer): How long a widget is kept in the spool" in kept
    counted = compose_answer(
        prompt_for("Which function tells me how many widgets a spool holds?", sources=sources, creator=None), vectors
    )
    assert "widget_count ( spool text ) → integer: Counts the widgets in a spool" in counted


def test_a_keyword_in_capitals_is_a_term_and_values_one_a_line_are_what_a_sentence_introduces(
    vectors: SentenceVectors,
) -> None:
    """A statement's parameters are keywords in capitals ("KEEP LOCKED: ..."), quoted with their description; a
    manual page's section in capitals ("NOTES") is a heading, never a term. Values listed one a line after the
    sentence introducing them ("accepts these spellings:" then "on", "yes", "1") are quoted with it."""
    sources = [
        hit(
            1,
            "PRUNE WIDGETS removes widgets from a spool.\n\nKEEP LOCKED\n\nLeave the widgets another user locked "
            "where they are.\n\nNOTES\n\nPruning cannot be undone.",
            title="PRUNE WIDGETS",
            creator="manual",
        ),
        hit(
            2,
            "The spool's switch accepts these spellings for the enabled state:\n\non\n\nyes\n\n1\n\n"
            "Case does not matter.",
            title="Spool switch",
            creator="manual",
        ),
    ]
    locked = compose_answer(
        prompt_for("How do I prune without touching the widgets someone locked?", sources=sources, creator=None),
        vectors,
    )
    assert "KEEP LOCKED: Leave the widgets another user locked where they are. [1]" in locked
    assert "NOTES:" not in locked
    enabled = compose_answer(
        prompt_for("Which spellings does the spool switch accept for enabled?", sources=sources, creator=None), vectors
    )
    assert "for the enabled state: `on`; `yes`; `1`. [2]" in enabled


def test_a_table_row_answers_with_the_value_it_holds(vectors: SentenceVectors) -> None:
    """A page's table as ingest reads it (a row a line, pipeline/sources/html.py): the row naming the asked thing
    is quoted whole, so the answer says which package it is, and the claim check finds it in the source."""
    from backend.grounding.claim_check import check_answer
    from pipeline.sources.html import read_page

    page = read_page(
        "<main><h2>Memory leak detection tools</h2><p>There are several memory leak detection tools in Debian.</p>"
        "<table><tr><th>package</th><th>popcon</th><th>description</th></tr>"
        "<tr><td>libc6-dev</td><td>V:246</td><td>mtrace(1): malloc debugging functionality in glibc</td></tr>"
        "<tr><td>valgrind</td><td>V:6</td><td>memory debugger and profiler</td></tr>"
        "<tr><td>electric-fence</td><td>V:0</td><td>malloc(3) debugger</td></tr></table></main>"
    )
    text = "\n\n".join(block.text for block in page.blocks)
    sources = [hit(1, text, title="Memory leak detection tools")]
    answer = compose_answer(prompt_for("Which memory debugger can find leaks?", sources=sources), vectors)
    assert "valgrind" in answer, answer
    checked = check_answer(answer, sources, vectors)
    assert any(s.claim for s in checked.sentences) and checked.unsupported_claims == 0, checked
    # Each row quoted ends as a sentence: its claim is checked alone, never run on into the next quote's.
    rows = [answer[s.start : s.end] for s in checked.sentences if "|" in answer[s.start : s.end]]
    assert rows and all(row.count("|") == 2 and row.endswith(". [1]") for row in rows), rows


def test_a_sentence_announcing_a_list_is_quoted_with_its_items(vectors: SentenceVectors) -> None:
    """ "There are three more special permission bits." answers nothing alone: the three lines after it do. They are
    quoted with it, each its own cited sentence (so the claim check reads each against the source), and no more
    than it counts; a paragraph after the list is not an item."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Each file has read, write and execute bits for its owner, its group and others.\n\n"
        "There are three more special permission bits.\n\n"
        "The set user ID bit (s or S instead of user's x)\n\n"
        "The set group ID bit (s or S instead of group's x)\n\n"
        "The sticky bit (t or T instead of other's x)\n\n"
        "Here the output of ls -l for these bits is capitalized if the execution bits hidden by them are unset."
    )
    sources = [hit(1, text, title="Filesystem permissions")]
    question = "What are the three special permission bits besides read, write and execute?"
    answer = compose_answer(prompt_for(question, sources=sources), vectors)
    for item in ("set user ID bit", "set group ID bit", "sticky bit"):
        assert item in answer, answer
    assert "capitalized" not in answer, answer
    assert answer.count("[1]") >= 4  # the announcing sentence and each item, cited
    checked = check_answer(answer, sources, vectors)
    assert checked.unsupported_claims == 0, checked


def test_a_sentence_pointing_back_a_few_words_in_leans_on_the_one_before(vectors: SentenceVectors) -> None:
    """ "If the script exits with this code, ..." names nothing: "this code" is in the sentence before, quoted with
    it (as one opening with "This" is). "Note that ..." and "this is" point at nothing."""
    import numpy as np

    from backend.grounding.relevance import Candidate
    from backend.grounding.sentences import split_sentences

    def leans(text: str) -> bool:
        before, sentence = split_sentences(f"The special exit code 125 marks a commit as untestable. {text}")
        candidate = Candidate(1, sentence, 0.5, 0.5, np.zeros(1, dtype=np.float32), previous=before)
        return candidate.leans_back

    assert leans("If the script exits with this code, the current revision will be skipped.")
    assert leans("In such a case, bisect moves on.")
    assert leans("This is why it exists.")  # opening with the pointer, as before
    assert not leans("Note that the script runs in the work tree.")
    assert not leans("Use the script as the test and this is what bisect does.")
    assert not leans("The script runs once per commit.")
    text = (
        "The special exit code 125 should be used when the current source code cannot be tested. If the script "
        "exits with this code, the current revision will be skipped."
    )
    answer = compose_answer(
        prompt_for("What happens when the script exits with the skip code?", sources=[hit(1, text)], creator=None),
        vectors,
    )
    assert "exit code 125" in answer and "will be skipped" in answer, answer


def test_a_row_keyed_by_the_asked_thing_under_the_asked_column_is_the_answer(vectors: SentenceVectors) -> None:
    """ "What end-of-line code do DOS and Windows use?" is a lookup: the row whose first cell names DOS and Windows, in
    the table whose column names say "EOL code". Terse, the row reads low by meaning alone, below prose about EOL
    codes; a table that opens with a row of data names no columns, so its rows get no such reading."""
    from pipeline.sources.html import read_page

    page = read_page(
        "<main><h2>EOL conversion</h2><p>The text file format, specifically the end-of-line (EOL) code, is dependent "
        "on the platform.</p><table><tr><th>platform</th><th>EOL code</th><th>control</th><th>decimal</th></tr>"
        "<tr><td>Debian (unix)</td><td>LF</td><td>^J</td><td>10</td></tr>"
        "<tr><td>MSDOS and Windows</td><td>CR-LF</td><td>^M^J</td><td>13 10</td></tr>"
        "<tr><td>Apple's Macintosh</td><td>CR</td><td>^M</td><td>13</td></tr></table>"
        "<p>The EOL format conversion programs, fromdos(1), todos(1), frommac(1), and tomac(1), are quite handy.</p>"
        "<table><tr><td>CP850</td><td>code page 850, Microsoft DOS characters for western European languages</td></tr>"
        "<tr><td>CP932</td><td>code page 932, Microsoft Windows style Shift-JIS variant for Japanese</td></tr>"
        "</table><p>This differs from MS-DOS and Microsoft Windows, where the path contains a device name such as "
        '"C:\\".</p></main>'
    )
    text = "\n\n".join(block.text for block in page.blocks)
    read = quotable(text, "EOL conversion")
    rows = {row.span.text.split(" | ")[0]: row for row in read if " | " in row.span.text}
    assert "window" in rows["MSDOS and Windows"].row_key and "cod" in rows["MSDOS and Windows"].columns
    assert not rows["CP932"].row_key and not rows["CP932"].columns
    sources = [hit(1, text, title="EOL conversion")]
    answer = compose_answer(prompt_for("What end-of-line code do DOS and Windows use?", sources=sources), vectors)
    assert "MSDOS and Windows | CR-LF" in answer, answer


def test_a_first_sentence_naming_the_page_as_this_command_is_labelled_with_its_name(vectors: SentenceVectors) -> None:
    """A manual page's description opens "This command shows ...": the command it means is the one its title opens
    with, quoted with the sentence, so "which command ...?" gets a name. A title that opens with prose labels
    nothing, and a later sentence is not the page's subject."""
    question = "Which command compares two versions of a patch series?"
    description = (
        "This command shows the differences between two versions of a patch series, or more generally, two commit "
        "ranges. It ignores merge commits."
    )
    named = [hit(1, description, title="git-range-diff - Compare two commit ranges: Description")]
    answer = compose_answer(prompt_for(question, sources=named), vectors)
    assert "git-range-diff: This command shows the differences" in answer, answer
    prose = [hit(1, description, title="Reviewing rebased work: Patch series")]
    assert "Reviewing" not in compose_answer(prompt_for(question, sources=prose), vectors)


def test_a_sentence_introducing_a_definition_list_is_quoted_with_its_terms(vectors: SentenceVectors) -> None:
    """ "Each section contains the following required keys:" then each key on its line with its description: the
    keys are what it introduces (all of them, not the first line only), and each description is quoted with its
    key. A list of one entry stays the code its sentence introduces."""
    from backend.grounding.claim_check import check_answer

    text = (
        "The file contains one subsection per submodule. Each submodule section also contains the following required "
        "keys:\n\nsubmodule.<name>.path\n\nDefines the path where the submodule is expected to be checked out. The "
        "path name must not end with a /.\n\nsubmodule.<name>.url\n\nDefines a URL from which the submodule "
        "repository can be cloned.\n\nIn addition, there is one optional key:\n\nsubmodule.<name>.update\n\n"
        "Defines the default update procedure for the named submodule."
    )
    sources = [hit(1, text, title="gitmodules - Defining submodule properties: Description")]
    answer = compose_answer(prompt_for("Which keys must each submodule section contain?", sources=sources), vectors)
    assert "`submodule.<name>.path`; `submodule.<name>.url`" in answer, answer
    assert "submodule.<name>.update" not in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0
    answer = compose_answer(prompt_for("What does the url key of a submodule define?", sources=sources), vectors)
    assert "submodule.<name>.url: Defines a URL" in answer, answer
    # A chunk that ends inside the list, right after the last key's line (its description opens the next chunk),
    # still introduces both keys.
    cut = text[: text.index("Defines a URL")].rstrip()
    sources = [hit(1, cut, title="gitmodules - Defining submodule properties: Description")]
    answer = compose_answer(prompt_for("Which keys must each submodule section contain?", sources=sources), vectors)
    assert "`submodule.<name>.path`; `submodule.<name>.url`" in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_sentence_leaning_on_one_that_leans_in_turn_is_quoted_with_both(vectors: SentenceVectors) -> None:
    """ "The script updates ..." speaks of the script the sentence before introduced ("... to run a script daily"),
    which speaks of the tool the one before it names ("Its main effect"): the three are quoted together, so "which
    tool?" gets the tool's name. A sentence opening with "The" and a thing nobody introduced leans on nothing."""
    from backend.grounding.leaning import leans_on

    assert leans_on("The script updates the list.", "Its main effect is to run a script daily (via cron).")
    assert not leans_on("The script updates the list.", "Its main effect is to run daily (via cron).")
    text = (
        "Keeping a system up to date by hand is tedious, so a set of tools can automate it. The first of these tools "
        "is apticron, in the package of the same name. Its main effect is to run a script daily (via cron). The "
        "script updates the list of available packages and sends an email with a list of the packages that are not "
        "in their latest version. Desktop users generally prefer a more interactive system."
    )
    sources = [hit(1, text, title="Keeping a System Up to Date")]
    answer = compose_answer(
        prompt_for("Which tool mails you a daily list of pending updates?", sources=sources), vectors
    )
    assert "apticron" in answer, answer
    assert answer.index("apticron") < answer.index("Its main effect") < answer.index("The script updates"), answer


def test_a_later_sentence_of_a_terms_description_is_quoted_after_its_first(vectors: SentenceVectors) -> None:
    """A description's first sentence says what the term does ("Like pop, but do not remove the state ..."); a later
    one qualifies it ("Unlike pop, <stash> may be any commit ..."). Picked alone, the later one comes with the first,
    labelled with the term, so "how do they differ?" gets what differs."""
    from backend.grounding.claim_check import check_answer

    text = (
        "OPTIONS\n\npop [--index] [-q|--quiet] [<stash>]\n\nRemove a single stashed state from the stash list and "
        "apply it on top of the current working tree state. The working directory must match the index.\n\n"
        "apply [--index] [-q|--quiet] [<stash>]\n\nLike pop, but do not remove the state from the stash list. Unlike "
        "pop, <stash> may be any commit that looks like a commit created by stash push or stash create.\n"
    )
    sources = [hit(1, text, title="git-stash - Stash the changes in a dirty working directory away")]
    answer = compose_answer(
        prompt_for("What's the difference between git stash pop and git stash apply?", sources=sources), vectors
    )
    assert "apply [--index] [-q|--quiet] [<stash>]: Like pop, but do not remove the state" in answer, answer
    assert answer.count("apply [--index]") == 1, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_configuration_lines_and_a_root_prompt_are_code_a_sentence_introduces(vectors: SentenceVectors) -> None:
    """A configuration file's lines ("[user]", "signingKey = <key-id>") and a command at a root prompt
    ("# dpkg-reconfigure locales") are code: quoted with the sentence ending "as follows:" or "as:" that shows them."""
    from backend.grounding.claim_check import check_answer

    tag = (
        "If you want to use a different default key, you can specify it in the repository configuration as follows:"
        "\n\n[user]\n    signingKey = <gpg-key_id>\n\npager.tag is only respected when listing tags."
    )
    sources = [hit(1, tag, title="git-tag - Create, list, delete or verify a tag object signed with GPG")]
    question = "How do I sign tags with a key other than the default?"
    answer = compose_answer(prompt_for(question, sources=sources), vectors)
    assert "as follows: `[user]`; `signingKey = <gpg-key_id>`." in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0

    locales = (
        "The locales package does not come with pre-compiled locale data. To compile the locale data you need, "
        "configure it as:\n\n# dpkg-reconfigure locales\n\nThe locales-all package comes with all of it pre-compiled."
    )
    sources = [hit(1, locales, title="The reconfiguration of the locale")]
    answer = compose_answer(prompt_for("How do I compile the locale data I need?", sources=sources), vectors)
    assert "configure it as: `# dpkg-reconfigure locales`." in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_sentence_going_on_after_its_code_is_quoted_whole(vectors: SentenceVectors) -> None:
    """Manuals set code in the middle of a sentence: "use one of the following commands:" `CREATE DATABASE ...` "from
    the SQL environment, or:" `createdb -O rolename dbname` "from the shell." The parts after the code are the same
    sentence: quoted with it (never alone, where "from the shell." says nothing) and their words are its words. A
    lower-case line naming what the code showed ("name follows the rules ...") is a sentence of its own."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Sometimes you want to create a database for someone else. To achieve that, use one of the following "
        "commands:\n\nCREATE DATABASE dbname OWNER rolename;\n\nfrom the SQL environment, or:\n\n"
        "createdb -O rolename dbname\n\nfrom the shell. Only the superuser is allowed to do that.\n\n"
        "To create a role use the CREATE ROLE SQL command:\n\nCREATE ROLE name;\n\n"
        "name follows the rules for SQL identifiers."
    )
    sources = [hit(1, text, title="Creating a Database")]
    question = "What commands create a database owned by someone else, from SQL or from the shell?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert (
        "use one of the following commands: `CREATE DATABASE dbname OWNER rolename;` from the SQL environment, or: "
        "`createdb -O rolename dbname` from the shell. [1]" in answer
    ), answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0
    quoted = quotable(text, "", "Creating a Database")
    assert not any(q.span.text.startswith("from the") for q in quoted)  # no part alone
    assert "shell" in next(q for q in quoted if q.span.text.startswith("To achieve")).terms
    role = next(q for q in quoted if q.span.text.startswith("To create a role"))
    assert role.code == "CREATE ROLE name;" and role.continued == ()
    assert any(q.span.text.startswith("name follows") for q in quoted)
    # What a sentence introduces is what it says: its code's words are its words.
    assert {"createdb", "-O", "owner", "rolenam"} <= next(
        q for q in quoted if q.span.text.startswith("To achieve")
    ).terms


def test_statements_headings_numbers_and_captions_are_not_sentences_or_terms(vectors: SentenceVectors) -> None:
    """A statement on a line of its own is code the sentence before introduces ("And on the subscriber database:",
    "... examine the pg_roles system catalog, for example"), never a sentence to quote nor the term the next sentence
    defines; a heading's number and a figure's caption are not sentences; a numbered heading is a term only for the
    code it names."""
    text = (
        "31.11. Quick Setup\n\nThen on the publisher database:\n\nCREATE PUBLICATION mypub FOR TABLE users;\n\n"
        "And on the subscriber database:\n\nCREATE SUBSCRIPTION mysub CONNECTION 'dbname=foo' PUBLICATION mypub;\n\n"
        "To list the roles, examine the pg_roles system catalog, for example\n\nSELECT rolname FROM pg_roles;\n\n"
        "The psql program's \\du meta-command is also useful.\n\nFigure 6.1. The publisher\n\nThat is all."
    )
    read = {q.span.text: q for q in quotable(text, "", "Quick Setup")}
    assert set(read) == {
        "Then on the publisher database:",
        "And on the subscriber database:",
        "To list the roles, examine the pg_roles system catalog, for example",
        "The psql program's \\du meta-command is also useful.",
        "That is all.",
    }, set(read)
    assert read["Then on the publisher database:"].label == ""  # "Quick Setup" names no code
    assert read["And on the subscriber database:"].code.startswith("CREATE SUBSCRIPTION mysub")
    assert (
        read["To list the roles, examine the pg_roles system catalog, for example"].code
        == "SELECT rolname FROM pg_roles;"
    )
    assert read["The psql program's \\du meta-command is also useful."].label == ""
    # All it is quoted with, as one text, from its first word: no empty term line before it.
    assert read["And on the subscriber database:"].whole.startswith("And on the subscriber database: CREATE")
    assert read["That is all."].whole == "That is all."
    answer = compose_answer(
        prompt_for("How do I subscribe on the subscriber database?", sources=[hit(1, text)], creator=None), vectors
    )
    assert "And on the subscriber database: `CREATE SUBSCRIPTION mysub" in answer, answer


def test_a_sentence_summing_up_steps_is_quoted_with_the_steps_and_their_code(vectors: SentenceVectors) -> None:
    """ "The above will start the replication process ..." leans on the steps before it, and a step's sentence leans
    on the step before when it opens with "Then" or with "And ..." introducing its code: each quoted with the code
    it introduces, never as a bare "And on the subscriber database:"."""
    from backend.grounding.claim_check import check_answer

    text = (
        "The other required settings have default values that are sufficient.\n\nThen on the publisher database:\n\n"
        "CREATE PUBLICATION mypub FOR TABLE users, departments;\n\nAnd on the subscriber database:\n\n"
        "CREATE SUBSCRIPTION mysub CONNECTION 'dbname=foo host=bar' PUBLICATION mypub;\n\n"
        "The above will start the replication process, which synchronizes the initial table contents and then "
        "starts replicating incremental changes to those tables."
    )
    sources = [hit(1, text, title="Quick Setup")]
    question = "How do I start replicating tables to another server?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "Then on the publisher database: `CREATE PUBLICATION mypub FOR TABLE users, departments;`. [1]" in answer
    assert "And on the subscriber database: `CREATE SUBSCRIPTION mysub" in answer, answer
    assert answer.index("CREATE PUBLICATION") < answer.index("CREATE SUBSCRIPTION") < answer.index("The above")
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_bare_signature_is_the_term_its_description_defines(vectors: SentenceVectors) -> None:
    """An API reference sets each function's signature on a line of its own ("abs(x)", "all(iterable)") above what
    it does: asked which function does that, the answer names it. A title with a parenthesis ("Introduction (part
    1)") names no function."""
    text = (
        "abs(x)\n\nReturn the absolute value of a number. The argument may be an integer or a float.\n\n"
        "all(iterable)\n\nReturn True if all elements of the iterable are true.\n\nIntroduction (part 1)\n\n"
        "Numbers are read as they are written."
    )
    sources = [hit(1, text, title="Built-in Functions")]
    answer = compose_answer(
        prompt_for("Which function gives me the absolute value of a number?", sources=sources, creator=None), vectors
    )
    assert "abs(x): Return the absolute value of a number." in answer, answer
    read = {q.span.text: q.label for q in quotable(text, "", "Built-in Functions")}
    assert read["Return True if all elements of the iterable are true."] == "all(iterable)"
    assert read["Numbers are read as they are written."] == ""


def test_the_example_a_bare_example_line_introduces_is_the_sentence_befores(vectors: SentenceVectors) -> None:
    """Sphinx guides set "Example:" on a line of its own between a sentence and its code ("... basic checks for you
    such as existence checks." "Example:" `@widget.argument('filename', type=widget.Path(exists=True))`): the sentence
    is quoted with its example, whose code is what the question asks for, and every quote is supported."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Path arguments are opened lazily. Besides returning the path, the type will also do some basic checks for "
        "you such as existence checks.\n\nExample:\n\n@widget.command()\n"
        "@widget.argument('filename', type=widget.Path(exists=True))\ndef touch(filename):\n\n"
        "And what it prints when the file is missing is an error."
    )
    sources = [hit(1, text, title="Arguments")]
    question = "My widget command takes a filename; how do I make it check that the file exists?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "existence checks. [1] Example: `@widget.command()`; `@widget.argument('filename', " in answer, answer
    assert "type=widget.Path(exists=True))`" in answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0
    read = {q.span.text: q for q in quotable(text, "", "Arguments")}
    assert "Example:" not in read  # not a sentence of its own
    assert read["And what it prints when the file is missing is an error."].label == ""  # nor its code a term


def test_a_line_only_pointing_at_code_gives_it_to_the_sentence_before(vectors: SentenceVectors) -> None:
    """Guides write "So you can do something like this:" or "And in action:" between a sentence and its code: such a
    line says nothing of its own, so its code is the example of the sentence before, quoted with it, and the line is no
    sentence to pick. A line with words of its own ("A child widget might look like this:") keeps its code, and a
    line of code the splitter ended at a "!" gets no example."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Widget commands exit when they finish. Starting with version 3 you can also call main() but disable the "
        "standalone mode, which turns off the handling of errors and the exit at the end.\n\n"
        "So you can do something like this:\n\nwidget.main(['spool', 'go'], standalone_mode=False)\n\n"
        "A child widget might look like this:\n\nwidget.child(name='leaf')\n\n"
        'print(f"Hello {name}!")\n\nAnd in action:\n\n$ widget hello\nHello you!'
    )
    read = {q.span.text: q for q in quotable(text, "", "Errors")}
    assert "So you can do something like this:" not in read
    standalone = next(q for t, q in read.items() if t.startswith("Starting with version 3"))
    assert standalone.example == (
        "So you can do something like this:",
        "widget.main(['spool', 'go'], standalone_mode=False)",
    )
    assert read["A child widget might look like this:"].code == "widget.child(name='leaf')"
    assert all(q.example is None for t, q in read.items() if t.startswith("print("))
    sources = [hit(1, text, title="Errors")]
    question = "How do I call a widget command from my own program and get its errors instead of an exit?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "So you can do something like this: `widget.main(['spool', 'go'], standalone_mode=False)`" in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_an_example_on_its_own_shows_the_sentence_before_or_is_the_term_of_the_one_explaining_it(
    vectors: SentenceVectors,
) -> None:
    """An example set on its own between two sentences (a program's lines, an import among them; a command at its
    prompt and what it printed) is no term the sentence after it defines, however much each line reads like one
    ("application = create_app()"): it shows the sentence before, whose code it is, quoted with it ("First, save the
    list ..." `$ spoolctl --get-selections >spool-list`), unless the sentence after names what its code does ("The -w
    option sets ..."), which it is then quoted with. An API attribute's line ("max_parts = 1000") is still a term."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Create the entry point of the server.\n\nwsgi.py\n\nfrom hello import create_app\n\n"
        "application = create_app()\n\nNow run the serve command.\n\n"
        "First, save the list of widgets installed on the model machine.\n\n$ spoolctl --get-selections >spool-list"
        "\n\nThe spool-list file then holds the list of installed widgets.\n\n"
        "Start the server with four workers.\n\n$ spoold -w 4 'hello:app'\nListening at 127.0.0.1\n\n"
        "The -w option sets the number of worker processes.\n\nmax_parts = 1000\n\n"
        "Parsing more than this many parts is refused.\n\n"
        "To unstage a widget (this is the same as using spoolctl-reset(1))\n\n$ spoolctl restore --staged w.c"
    )
    read = {q.span.text: q for q in quotable(text, "", "Deploying")}
    assert read["Now run the serve command."].label == ""
    assert read["Create the entry point of the server."].code.splitlines()[-1] == "application = create_app()"
    assert read["First, save the list of widgets installed on the model machine."].code == (
        "$ spoolctl --get-selections >spool-list"
    )
    assert read["The spool-list file then holds the list of installed widgets."].label == ""
    assert read["The -w option sets the number of worker processes."].label == "$ spoold -w 4 'hello:app'"
    assert read["Start the server with four workers."].code == ""
    assert read["Parsing more than this many parts is refused."].label == "max_parts = 1000"
    # A manual page's example sentence ends without a full stop.
    unstage = read["To unstage a widget (this is the same as using spoolctl-reset(1))"]
    assert unstage.code == "$ spoolctl restore --staged w.c"
    sources = [hit(1, text, title="Deploying")]
    question = "How do I save the list of installed widgets to set up another machine the same way?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "model machine. `$ spoolctl --get-selections >spool-list`. [1]" in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_the_sentence_saying_how_comes_with_the_problem_it_solves(vectors: SentenceVectors) -> None:
    """A problem stated in the question's words, then the way out in the next sentence ("Instead, use ..."): asked how,
    the answer quotes both. A sentence saying only that there is a way ("This can be done easily.") is not the way."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Widget groups often open a spool that their subcommands use, and the spool must be closed afterwards. "
        "However, a with block in the group would close the spool before any subcommand could read it. "
        "Instead, register it with the context's with_resource() method, which closes it when the command ends.\n\n"
        "Spools can be shared between the widgets of one group and the widgets of another. This can be done easily."
    )
    sources = [hit(1, text, title="Advanced patterns")]
    question = "My widget group opens a spool for its subcommands. How do I make sure it gets closed when they finish?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "Instead, register it with the context's with_resource() method" in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0
    shared = compose_answer(
        prompt_for("How do I share a spool between widgets?", sources=sources, creator=None), vectors
    )
    assert "This can be done easily." not in shared, shared


def test_a_long_signature_is_the_term_its_description_defines(vectors: SentenceVectors) -> None:
    """A signature listing many parameters is longer than any other term line (Click's `version_option`, 103
    characters; the standard library's `subprocess.run`, twice that): asked which function does that, the answer still
    names it. A long sentence with a parenthesis is no signature."""
    signature = (
        "widgets.version_option(version=None, *param_decls, package_name=None, prog_name=None, message=None, **kwargs)"
    )
    text = (
        f"{signature}\n\nAdd a --version option which prints the version number and exits the program.\n\n"
        "The version is read from the installed package (its metadata, as importlib.metadata reads it) unless given."
    )
    sources = [hit(1, text, title="API")]
    answer = compose_answer(
        prompt_for("Is there a ready-made way to add a --version flag?", sources=sources, creator=None), vectors
    )
    assert f"{signature}: Add a --version option" in answer, answer
    read = {q.span.text: q.label for q in quotable(text, "", "API")}
    assert read["Add a --version option which prints the version number and exits the program."] == signature
    assert read[text.rsplit("\n\n", 1)[1]] == signature  # a later sentence of the same description


def test_a_term_description_opens_with_its_first_sentence_and_a_heading_number_is_no_term(
    vectors: SentenceVectors,
) -> None:
    """A later sentence of a parameter's description comes after its first, even one opening "This is the ..." (the
    description's definition, not a signpost); a numbered heading's number is not quoted as part of the name."""
    from backend.grounding.claim_check import check_answer

    text = (
        "20.12. Lock Management\n\ndeadlock_timeout (integer)\n\nThis is the amount of time to wait on a lock before "
        "checking to see if there is a deadlock condition. The check for deadlock is relatively expensive. Ideally "
        "the setting should exceed your typical transaction time, so that a lock is released before the waiter "
        "checks for deadlock."
    )
    sources = [hit(1, text, title="Lock Management")]
    question = "Should the deadlock check wait longer than a typical transaction?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "deadlock_timeout (integer): This is the amount of time to wait on a lock" in answer, answer
    assert answer.index("This is the amount") < answer.index("Ideally"), answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0

    view = (
        "37.11. collation_character_set_applicability\n\nThe view collation_character_set_applicability identifies "
        "which character set the available collations are applicable to."
    )
    sources = [hit(1, view, title="collation_character_set_applicability")]
    answer = compose_answer(
        prompt_for("Which view says what character set a collation applies to?", sources=sources, creator=None), vectors
    )
    assert "collation_character_set_applicability: The view" in answer and "37.11" not in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_sentence_denied_by_the_next_one_is_quoted_with_the_denial(vectors: SentenceVectors) -> None:
    """ "Sometimes people think ... these two are synonyms." read alone says the opposite of its source, which goes
    on "They are not — ...": a sentence is never quoted without the one after it that denies it."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Many commands can take --cached and/or --index options. Sometimes people incorrectly think that, because the "
        "index was originally called cache, these two are synonyms. They are not — these two options mean very "
        "different things.\n\nThe --cached option asks a command that works on files to only work with the index."
    )
    sources = [hit(1, text, title="gitcli - Git command-line interface and conventions")]
    answer = compose_answer(prompt_for("Are --cached and --index synonyms?", sources=sources, creator=None), vectors)
    assert "these two are synonyms. [1] They are not" in answer, answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_which_tool_answer_brings_the_next_sentence_naming_the_tool(vectors: SentenceVectors) -> None:
    """Asked for a name, a sentence that names none ("Avoid writing a shell script with bashisms ...") comes with the
    next one when it names the thing by a man-page reference and points back ("You can check it using
    checkbashisms(1)."). A sentence that names nothing asked is not followed by an unrelated one."""
    text = (
        "Avoid writing a shell script with bashisms or zshisms to make it portable among all POSIX shells. You can "
        "check it using checkbashisms(1).\n\nThe default interactive shell is bash."
    )
    sources = [hit(1, text, title="POSIX shell compatibility")]
    answer = compose_answer(
        prompt_for("Which tool checks a shell script for bashisms?", sources=sources, creator=None), vectors
    )
    assert "checkbashisms(1)" in answer, answer
    assert answer.index("Avoid writing") < answer.index("checkbashisms"), answer
    plain = compose_answer(prompt_for("Why avoid bashisms in shell scripts?", sources=sources, creator=None), vectors)
    assert "Avoid writing" in plain and "checkbashisms" not in plain, plain


def test_a_bare_cross_reference_is_never_quoted(vectors: SentenceVectors) -> None:
    """ "See Section 9.1.1, “Recording the shell activities cleanly”." points elsewhere and says nothing: the sentence
    that names the command is quoted instead, a man-page reference ("script(1)") counting as a name."""
    text = (
        "$ vim typescript\n\nSee Section 9.1.1, “Recording the shell activities cleanly”.\n\n"
        "The basic method of recording the shell activity is to run it under script(1)."
    )
    sources = [hit(1, text, title="Recording the shell activities")]
    answer = compose_answer(
        prompt_for("Which command records the shell activities?", sources=sources, creator=None), vectors
    )
    assert "script(1)" in answer, answer
    assert "See Section" not in answer, answer
    # Nor after a brief sentence, which otherwise brings the next one along.
    brief = [hit(1, "git am can run the applypatch-msg hook. See githooks(5) for more information.", title="git-am")]
    answer = compose_answer(prompt_for("Which hook can git am run?", sources=brief, creator=None), vectors)
    assert "applypatch-msg" in answer and "githooks(5)" not in answer, answer


def test_a_sentence_opening_with_whereas_is_quoted_with_the_one_it_contrasts(vectors: SentenceVectors) -> None:
    """ "Whereas a lightweight tag is simply a name for an object." says half of a contrast: the sentence before
    holds the other half (what an annotated tag contains), which is what "what makes a tag annotated?" asks."""
    from backend.grounding.leaning import leans_on

    assert leans_on("Whereas a lightweight tag is simply a name.", "Annotated tags contain a date.")
    assert leans_on("Otherwise, a lightweight tag is created.", "If -a is given, a tag object is created.")
    assert not leans_on("Where tags live is up to you.", "Annotated tags contain a date.")
    text = (
        "Tag objects (created with -a, -s, or -u) are called annotated tags; they contain a creation date, the tagger "
        "name and e-mail, a tagging message, and an optional GnuPG signature. Whereas a lightweight tag is simply a "
        "name for an object (usually a commit object). Annotated tags are meant for release while lightweight tags "
        "are meant for private or temporary object labels."
    )
    sources = [hit(1, text, title="git-tag - Create, list, delete or verify a tag object")]
    answer = compose_answer(
        prompt_for("What makes a tag 'annotated' rather than lightweight?", sources=sources, creator=None), vectors
    )
    assert "creation date" in answer, answer
    assert answer.index("creation date") < answer.index("Whereas a lightweight tag"), answer


def test_a_sentence_two_picks_lean_on_is_quoted_once_and_opens_with_its_term(vectors: SentenceVectors) -> None:
    """Two later sentences of one term's description ("The command is ...", "The tar.gz and tgz formats ...") both
    bring its first sentence along: it is quoted once, labelled with the term, before them."""
    text = (
        "CONFIGURATION\n\ntar.umask\n\nThis variable can be used to restrict the permission bits of tar archive "
        "entries.\n\ntar.<format>.command\n\nThis variable specifies a shell command through which the tar output "
        "generated by git archive should be piped. The command is executed using the shell with the generated tar "
        "file on its standard input, and should produce the final output on its standard output. The tar.gz and tgz "
        "formats are defined automatically and use the magic command git archive gzip by default.\n"
    )
    sources = [hit(1, text, title="git-archive - Create an archive of files from a named tree")]
    answer = compose_answer(
        prompt_for(
            "How is the command run, and which formats are defined automatically?", sources=sources, creator=None
        ),
        vectors,
    )
    assert "The tar.gz and tgz formats" in answer and "The command is executed" in answer, answer
    assert answer.count("This variable specifies a shell command") == 1, answer
    assert "tar.<format>.command: This variable specifies a shell command" in answer, answer


def test_a_sentence_its_chunk_cut_after_the_colon_is_quoted_from_the_copy_with_its_code(
    vectors: SentenceVectors,
) -> None:
    """Chunks overlap: one ends on "... run the following commands:", the next repeats that sentence with the commands
    (comment lines among them, one holding a backtick). The sentence is quoted once, from the copy with its code, the
    comments kept as code and a backtick inside code in double backticks; never as a colon leading nowhere."""
    first = (
        "Copying a package selection\n\nYou can install the same packages on several machines. First, save the "
        "selection on the model machine with dpkg --get-selections. Then copy the list file to the other machines "
        "and run the following commands:"
    )
    second = (
        "Then copy the list file to the other machines and run the following commands:\n\n"
        '## Refresh the known packages\n# tmp=`mktemp`\n# apt-cache dumpavail > "$tmp"\n'
        '# dpkg --merge-avail "$tmp"\n## Restore the selection\n# dpkg --set-selections < list\n'
        "# apt-get dselect-upgrade\n\nThe selection is then installed."
    )
    sources = [hit(1, first, title="Copying a package selection"), hit(2, second, title="Copying a package selection")]
    answer = compose_answer(
        prompt_for("Which commands restore the package list on the other machines?", sources=sources, creator=None),
        vectors,
    )
    assert "run the following commands: `## Refresh the known packages`; `` # tmp=`mktemp` ``;" in answer, answer
    assert "`# dpkg --set-selections < list`" in answer, answer
    assert "commands: [1]" not in answer, answer


def test_a_python_block_is_code_whole_and_a_long_one_is_quoted_by_its_opening_lines(vectors: SentenceVectors) -> None:
    """A block header on an indented line ("    if 'db' not in g:") reads like words but is a line of the code block:
    not a sentence going on after the code before it. A block longer than a quote holds is quoted by its opening
    lines and "…", where it used to be left out whole (or quoted in pieces between such headers)."""
    from backend.grounding.claim_check import check_answer

    text = (
        "Store data for the length of one request on g. For example, you can manage a database connection using "
        "this pattern:\n\nfrom flask import g\n\ndef get_db():\n    if 'db' not in g:\n"
        "        g.db = connect_to_database()\n\n    return g.db\n\n@app.teardown_appcontext\n"
        "def teardown_db(exception):\n    db = g.pop('db', None)\n\n    if db is not None:\n        db.close()\n\n"
        "The connection is reused if get_db is called a second time in the same request."
    )
    quoted = quotable(text, "", "Application Context")
    pattern = next(q for q in quoted if q.span.text.endswith("using this pattern:"))
    assert pattern.continued == () and not any(q.span.text.startswith("if ") for q in quoted)
    assert pattern.code.splitlines() == [
        "from flask import g",
        "def get_db():",
        "if 'db' not in g:",
        "g.db = connect_to_database()",
        "return g.db",
        "@app.teardown_appcontext",
        "def teardown_db(exception):",
        "db = g.pop('db', None)",
        "…",
    ]
    sources = [hit(1, text, title="Application Context")]
    question = "How do I keep a database connection for one request?"
    answer = compose_answer(prompt_for(question, sources=sources, creator=None), vectors)
    assert "`if 'db' not in g:`; `g.db = connect_to_database()`; " in answer and "`db = g.pop('db', None)`; … [1]" in (
        answer
    ), answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_what_a_shell_session_printed_is_never_quoted_and_its_commands_are_the_code(vectors: SentenceVectors) -> None:
    """A shell session's lines below a command at its prompt, in the same block, are what the program printed, not the
    author's words, however much they read like a sentence ("PING spool.example (10.0.0.7) 1472(1500) bytes of
    data."): never quoted. The sentence introducing the session is quoted with its commands, every one of them,
    without their output, after the program it runs when there is one; a line printed past a blank line that names
    the command's option is no sentence explaining the command."""
    from backend.grounding.claim_check import check_answer

    text = (
        "The largest packet that passes unfragmented is the MTU. The following finds it to be 1460 for the spool "
        "host.\n\n$ ping -c 1 -s 1472 -M do spool.example\nPING spool.example (10.0.0.7) 1472(1500) bytes of data.\n"
        "ping: local error: message too long, mtu=1460\n1 packets transmitted, 0 received, 100% packet loss.\n"
        "$ ping -c 1 -s 1432 -M do spool.example\n1440 bytes from spool.example: icmp_seq=1 time=32 ms\n\n"
        "Greeting a widget by name looks like this:\n\n@widget.command()\ndef greet(name):\n    echo(name)\n"
        "$ greet\nHello Nobody!\n$ greet --name Leaf\nHello Leaf!\n\n"
        "$ greet --help\nUsage: greet [OPTIONS]\n\n--help Show this message and exit."
    )
    read = {q.span.text: q for q in quotable(text, "", "Finding the MTU")}
    assert not [t for t in read if "bytes" in t or "packets" in t or t.startswith("Hello")], list(read)
    finds = read["The following finds it to be 1460 for the spool host."]
    assert finds.code == "$ ping -c 1 -s 1472 -M do spool.example\n$ ping -c 1 -s 1432 -M do spool.example"
    greeting = read["Greeting a widget by name looks like this:"]
    assert greeting.code.splitlines() == [
        "@widget.command()",
        "def greet(name):",
        "echo(name)",
        "$ greet",
        "$ greet --name Leaf",
        "$ greet --help",
    ]
    assert read["--help Show this message and exit."].label == ""
    # A price at a line's start is no prompt: what follows it is still said.
    market = {q.span.text for q in quotable("$ 5 buys a rye loaf at the market.\nThe rest goes to the mill.", "", "")}
    assert "The rest goes to the mill." in market
    sources = [hit(1, text, title="Finding the MTU")]
    answer = compose_answer(
        prompt_for("How do I find the MTU of the spool host?", sources=sources, creator=None), vectors
    )
    assert "`$ ping -c 1 -s 1432 -M do spool.example`. [1]" in answer, answer
    assert "bytes of data" not in answer and "packet loss" not in answer
    assert check_answer(answer, sources, vectors).unsupported_claims == 0


def test_a_changelog_entry_ending_in_its_issue_number_is_a_sentence(vectors: SentenceVectors) -> None:
    """A release's notes, one entry a line, each closed by a full stop and then the issue it was discussed in ("Drop
    support for Python 3.8. #2129"): short and ending in a number, yet a sentence, not a heading; it answers what the
    release changed. A line with no full stop before its number ("Step #2") is still a heading. The line dating the
    release is no heading of its own: the entries under it are still about "Version 5.4.0", so a question asking
    about 5.4 gets 5.4.0's entry and not 5.3.0's, which says nearly the same."""
    text = (
        "Version 5.4.0\n\nReleased 2026-03-28\n\nDrop support for Python 3.8. #2129\n\n"
        "Remove previously deprecated code. (#2130)\n\nThe spool can be pruned from a timer. #2131, #2140\n\nStep #2"
    )
    older = "Version 5.3.0\n\nReleased 2025-09-02\n\nDrop support for Python 2 and 3.7. #1840"
    read = [q.span.text for q in quotable(text, "Changes > Version 5.4.0", "Changes")]
    assert read == [
        "Drop support for Python 3.8. #2129",
        "Remove previously deprecated code. (#2130)",
        "The spool can be pruned from a timer. #2131, #2140",
    ]
    dated = quotable(text, "Changes > Version 5.4.0", "Changes")[0]
    assert {"5.4", "5.4.0"} <= dated.context, sorted(dated.context)
    sources = [hit(1, older, title="Changes"), hit(2, text, title="Changes")]
    asked = "Which Python version did the spool tool stop supporting in 5.4?"
    best = rank(read_question(asked, creator=None), sources, vectors)[0]
    assert (best.source, best.span.text) == (2, "Drop support for Python 3.8. #2129")
    answer = compose_answer(prompt_for(asked, sources=sources, creator=None), vectors)
    assert "Drop support for Python 3.8. #2129. [2]" in answer, answer
