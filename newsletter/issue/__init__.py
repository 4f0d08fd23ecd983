"""Articles -> issue: the period an issue covers (`periods`), which articles it carries
(`selection`), the stored draft and editors' overrides (`build`), the HTML and text it becomes
(`render`, `text`, `checks`), and a look at it before sending (`preview`)."""
