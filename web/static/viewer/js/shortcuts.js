// The keyboard shortcuts and mouse gestures, in one table: the help overlay lists these, and the
// viewport's key handler (viewport.js, studyview.js) implements exactly these keys.

export const SHORTCUTS = [
  ['Scrolling', [
    ['Wheel, ↑ ↓, PgUp PgDn', 'previous / next slice'],
    ['Home / End', 'first / last slice'],
    ['Left-drag (Scroll tool)', 'scroll through the stack'],
    ['Scrollbar at the right', 'drag or click to jump'],
  ]],
  ['Window', [
    ['Right-drag', 'window: left/right = width, up/down = level'],
    ['1 2 3 4 5', 'CT brain, lung, bone, abdomen, mediastinum'],
    ['0', "the image's own window"],
    ['I', 'invert'],
  ]],
  ['Zoom and pan', [
    ['Ctrl + wheel, pinch', 'zoom at the pointer'],
    ['Middle-drag', 'pan'],
    ['F / double-click', 'fit to the viewport'],
    ['A', 'actual size (1 image pixel per screen pixel)'],
    ['+ / -', 'zoom in / out'],
  ]],
  ['Tools (left button)', [
    ['S', 'scroll tool'],
    ['P', 'pan tool'],
    ['Z', 'zoom tool'],
    ['W', 'window tool'],
    ['M', 'length measurement'],
    ['Delete', "remove this slice's measurements"],
  ]],
  ['Cine and layout', [
    ['C or Space', 'play / stop cine'],
    ['[ / ]', 'slower / faster cine'],
    ['Tab', 'next viewport'],
    ['R', 'reset the viewport'],
    ['?', 'this help; Esc closes it'],
  ]],
];

// Window presets for CT, in Hounsfield units (center, width); keys 1-5 pick them.
export const CT_PRESETS = [
  { name: 'Brain', center: 40, width: 80 },
  { name: 'Lung', center: -600, width: 1500 },
  { name: 'Bone', center: 400, width: 1800 },
  { name: 'Abdomen', center: 60, width: 400 },
  { name: 'Mediastinum', center: 50, width: 350 },
];
